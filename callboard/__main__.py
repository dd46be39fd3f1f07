"""``python -m callboard``: the same as the ``callboard`` command."""

import sys

from callboard.cli import main

if __name__ == "__main__":
    sys.exit(main())
