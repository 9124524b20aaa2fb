"""Errors that mean "the user's input is wrong" (CLI exit 2, one line, no traceback)."""

from __future__ import annotations


class ImauditError(Exception):
    """Base class for errors imaudit raises on purpose."""


class BadInputError(ImauditError, ValueError):
    """A ref, path, file or field the user gave cannot be used.

    The message is one line and names the offending file or field, because the
    CLI prints exactly it and exits with status 2.
    """


class RefError(BadInputError):
    """A model or dataset ref is malformed or points at nothing."""


class CheckpointError(BadInputError):
    """A checkpoint is unreadable or does not fit the architecture."""
