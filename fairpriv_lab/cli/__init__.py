"""The command line ``fairpriv-lab`` (``python -m fairpriv_lab``)."""

from .commands import main

__all__ = ["main"]
