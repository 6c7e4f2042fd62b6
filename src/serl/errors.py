"""The errors that carry a user's next step in their message: `serl` prints them in one line.

Each also is the builtin error it refines (a `ConfigError` is a `ValueError`), so code that
catches the builtin keeps working. Any other exception is a bug or a library's failure and
keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message says all a user needs to act on it."""


class ConfigError(UserError, ValueError):
    """A flag, config value, env id or input that cannot work."""


class PathNotFound(UserError, FileNotFoundError):
    """A path the user named does not exist or holds something else."""


class PathExists(UserError, FileExistsError):
    """An output that would overwrite what is already there."""


class ProcessFailed(UserError, RuntimeError):
    """A process or device of the run failed; the message names its log or cause."""
