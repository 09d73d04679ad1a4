"""``python -m fairpriv_lab.sweep {sweep,notebooks} ...``."""

import sys

from fairpriv_lab.sweep.runner import main

if __name__ == "__main__":
    sys.exit(main())
