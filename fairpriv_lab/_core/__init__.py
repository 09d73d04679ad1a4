"""The vocabulary every layer shares: validation, randomness, devices and the exception tree.

Nothing here imports another ``fairpriv_lab`` layer (see ``docs/ARCHITECTURE.md``).
"""
