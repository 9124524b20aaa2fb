"""Errors imaudit raises on purpose, by what the user should do about them.

The CLI maps them to its exit codes in one place (imaudit.cli): BadInputError
-> 2 (one line naming the ref, file or field), IncompleteError and any crash
-> 3 (one line saying what, and where the log is).
"""

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


class IncompleteError(ImauditError):
    """The work could not complete although its input was fine (CLI exit 3).

    A required audit stage failed, Prefect could not start, or the run was
    interrupted. The message is one line saying what failed.
    """


class AuditFailed(IncompleteError):
    """An audit ran to the end but a required stage (identify, predict, diagnose) failed.

    Its partial report is written (``folder``) and says so; the flow run fails
    with this error, so Prefect, failure records and events tell the truth, and
    the CLI shows the partial summary before it exits 3.
    """

    def __init__(self, message: str, folder: str | None = None) -> None:
        super().__init__(message, folder)  # both in args: survives pickling through Prefect's results
        self.folder = folder

    def __str__(self) -> str:
        return str(self.args[0])


class PrefectStartError(IncompleteError):
    """Prefect's API (the temporary server or PREFECT_API_URL) could not be reached or started."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt.

    A KeyboardInterrupt (a BaseException) so that no ``except Exception``
    (a stage recorded as failed, a retry) swallows it: it unwinds the run, the
    temp folders are removed on the way out, and the CLI exits 3.
    """
