"""``python -m scratchformer ...`` — the same command line as ``scratchformer ...``."""

import sys

from scratchformer.cli import main

if __name__ == "__main__":
    sys.exit(main())
