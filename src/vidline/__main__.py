from vidline.cli import entry

entry()
