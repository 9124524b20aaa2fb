"""Exit codes, for every command, decided in one place.

0  done (for an audit: it completed and passed its gate);
1  done, and a gate failed (``--fail-on``, a partial audit, ``imaudit gate``);
2  bad input: one line naming the ref, file or field (BadInputError);
3  could not complete: a required stage failed, Prefect could not start, the
   run was interrupted (SIGINT/SIGTERM) or crashed; one line saying what and
   where the log with the full traceback is.

Commands return, raise ``typer.Exit(ExitCode.GATE_FAILED)``, or raise; the
``ExitCodeGroup`` turns what they raise into a code and one line on stderr,
never a traceback. New commands get this by being on the app.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import typer
from typer.core import TyperGroup

from imaudit import interrupts, runlog
from imaudit.errors import BadInputError, IncompleteError, Terminated


class ExitCode(IntEnum):
    OK = 0
    GATE_FAILED = 1
    BAD_INPUT = 2
    INCOMPLETE = 3


OUTCOME = {ExitCode.OK: "passed", ExitCode.GATE_FAILED: "gate failed", ExitCode.BAD_INPUT: "bad input",
           ExitCode.INCOMPLETE: "could not complete"}


def code_of_error(exc: BaseException | None) -> ExitCode:
    """The exit code an error means, without side effects (failure records and events of deployment runs
    use it so that they say what the CLI would): 2 for bad input, 3 for everything else."""
    return ExitCode.BAD_INPUT if isinstance(exc, BadInputError) else ExitCode.INCOMPLETE


def _say_error(message: str) -> None:
    """One line on stderr (user text escaped from rich markup; never wrapped)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[red]imaudit: error:[/red] {escape(message)}", highlight=False)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _incomplete(what: str, exc: BaseException, say: Callable[[str], None]) -> typer.Exit:
    log = runlog.record_exception(what, exc)
    say(f"could not complete: {_one_line(what)}" + (f" (log: {log})" if log else ""))
    return typer.Exit(ExitCode.INCOMPLETE)


def exit_for(exc: BaseException, say: Callable[[str], None] = _say_error) -> typer.Exit | None:
    """The exit for an exception a command raised (None: let typer handle it, e.g. usage errors)."""
    if isinstance(exc, (typer.Exit, typer.TyperException, typer.Abort)):
        return None
    sig = interrupts.received()
    if sig is not None or isinstance(exc, KeyboardInterrupt):  # whatever exception the interrupt became
        name = "SIGTERM" if sig == signal.SIGTERM or isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
        return _incomplete(f"interrupted by {name}; partial results were removed", exc, say)
    if isinstance(exc, BadInputError):
        say(_one_line(str(exc)))
        return typer.Exit(ExitCode.BAD_INPUT)
    if isinstance(exc, IncompleteError):
        return _incomplete(str(exc), exc, say)
    if isinstance(exc, Exception):
        return _incomplete(f"crashed: {type(exc).__name__}: {exc}", exc, say)
    return None  # SystemExit, GeneratorExit: not ours to reinterpret


class ExitCodeGroup(TyperGroup):
    """The app's group: runs each command with a run log and SIGTERM as an exception, maps its exit."""

    def invoke(self, ctx: Any) -> Any:
        runlog.start("imaudit")
        try:
            with interrupts.watch():
                try:
                    return super().invoke(ctx)
                except BaseException as e:  # noqa: BLE001 - every exception becomes an exit code; tracebacks go to the log
                    mapped = exit_for(e)
                    if mapped is None:
                        raise
                    raise mapped from None
        finally:
            runlog.finish()
