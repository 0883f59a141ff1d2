import sys

from vidline.cli import main

sys.exit(main())
