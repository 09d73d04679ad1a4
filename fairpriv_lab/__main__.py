"""``python -m fairpriv_lab``: the same command line as the ``fairpriv-lab`` script."""

import sys

from .cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
