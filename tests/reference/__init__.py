"""Slow or old implementations the fast kernels are tested against (not part of the library)."""
