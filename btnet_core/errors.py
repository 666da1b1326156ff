"""User-facing errors of btnet-lab.

Every error a user can cause (a bad config, a missing folder, a corrupt file) is raised as a
subclass of :class:`BTNetError`. Its message is one line that names the file, the key or value
and what is allowed; the command line prints that line and exits with status 2, without a stack
trace. Anything else that escapes is a bug in btnet-lab.
"""

from __future__ import annotations


class BTNetError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(BTNetError):
    """A config or study file has an unknown key, a wrong type or a value out of range."""


class DataError(BTNetError):
    """A dataset is missing, empty, too small or holds unreadable images."""


class FormatError(BTNetError):
    """A file of one of the field's formats is truncated, corrupt or refused as unsafe."""


class CheckpointError(BTNetError):
    """A checkpoint is missing, corrupt or belongs to another network."""


class DivergedError(BTNetError):
    """Training produced a NaN or infinite loss."""


class StoreError(BTNetError):
    """The result store is missing, empty, of a newer schema, or a query failed."""
