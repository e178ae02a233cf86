"""User-facing errors: the CLI prints these as one clear line, without a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: names the problem and, where there are any, the valid choices."""


class ConfigError(UserError):
    """An invalid or malformed training configuration."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or was not written by this package."""
