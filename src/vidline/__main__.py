import sys

try:
    from vidline.cli import entry
except KeyboardInterrupt:  # Ctrl-C while the modules load: no traceback
    sys.exit(130)

entry()
