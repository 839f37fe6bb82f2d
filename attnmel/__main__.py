"""``python -m attnmel`` (and ``torchrun -m attnmel train ...``): the ``attnmel`` command."""

import sys

from attnmel.cli import main

if __name__ == "__main__":
    sys.exit(main())
