"""`python -m modelbench.cli`: the `modelbench` command."""

import sys

from modelbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
