"""The package's small exception and warning tree.

Domain errors subclass :class:`ValueError` so that ``except ValueError`` keeps working, in the
manner of Opacus's ``UnsupportedError`` family; data problems warn with a
:class:`UserWarning` subclass.
"""

from __future__ import annotations

__all__ = [
    "FairPrivError",
    "ConfigError",
    "UnsupportedModelError",
    "PrivacyAccountingError",
    "TrainingDivergedError",
    "DatasetError",
    "DownloadError",
    "CacheCorruptedError",
    "CacheWriteError",
    "DataWarning",
    "SmallGroupWarning",
    "PrivacyWarning",
]


class FairPrivError(ValueError):
    """Base class of every error raised on purpose by fairpriv-lab."""


class ConfigError(FairPrivError):
    """A parameter or a combination of parameters is not allowed."""


class UnsupportedModelError(ConfigError):
    """A user model holds a layer the vectorised engine cannot differentiate per sample."""


class PrivacyAccountingError(FairPrivError):
    """The accountant cannot reach the requested privacy budget."""


class TrainingDivergedError(FairPrivError, RuntimeError):
    """Training produced NaN or infinite losses.

    Attributes
    ----------
    model : int
        Index of the first model that diverged.
    epoch : int
        Epoch (0-based) at which it diverged.
    partial : object or None
        The finished part of the result (models that trained without error), if any.
    """

    def __init__(self, message: str, *, model: int, epoch: int, partial: object | None = None):
        super().__init__(message)
        self.model = model
        self.epoch = epoch
        self.partial = partial


class DatasetError(FairPrivError):
    """A dataset cannot be loaded or does not have the expected form."""


class DownloadError(DatasetError, OSError):
    """A dataset file could not be fetched or failed verification."""


class CacheCorruptedError(FairPrivError):
    """A cached result failed verification (truncated, modified or unreadable)."""


class CacheWriteError(FairPrivError, OSError):
    """A cache file could not be written (disk full or over quota).

    Attributes
    ----------
    path : pathlib.Path
        The file that could not be written.
    needed, free : int
        Bytes the file needed and bytes free on its disk (-1 when unknown).
    """

    def __init__(self, message: str, *, path: object, needed: int, free: int):
        super().__init__(message)
        self.path = path
        self.needed = needed
        self.free = free


class DataWarning(UserWarning):
    """Something about the data deserves attention but does not stop the computation."""


class SmallGroupWarning(DataWarning):
    """A group has too few audited records for its risk estimate to be trusted."""


class PrivacyWarning(UserWarning):
    """A privacy setting is legal but unwise (for example delta >= 1/n)."""
