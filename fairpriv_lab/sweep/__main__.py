"""``python -m fairpriv_lab.sweep {sweep,notebooks} ...`` (the command line is :mod:`fairpriv_lab.cli.sweep`)."""

import sys

# Imported under the package name: functions sent to the workers must be importable there as
# fairpriv_lab.sweep.*, not pickled by value from __main__.
from fairpriv_lab.cli.sweep import main

if __name__ == "__main__":
    sys.exit(main())
