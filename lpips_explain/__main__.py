"""``python -m lpips_explain``: the same command line as ``lpips-explain``."""

import sys

from lpips_explain.cli import main

if __name__ == "__main__":
    sys.exit(main())
