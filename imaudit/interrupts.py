"""SIGINT and SIGTERM, remembered however the code that was running dealt with them.

A signal becomes an exception in the main thread (Ctrl-C's KeyboardInterrupt;
SIGTERM's ``Terminated`` here, Prefect's TerminationSignal while a flow runs,
which swaps the handler). Raised at an arbitrary point, such an exception can
be replaced on its way out (Prefect 3.8 turns one raised while a task run
starts into "ValueError: Task run is not set") or swallowed by a library's
bare ``except``. So every such signal is also recorded through the
interpreter's wakeup fd, which CPython writes whatever Python-level handler
is installed: the flow calls ``raise_if_received`` between stages, and the
CLI reports "interrupted" whatever exception finally arrives.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from imaudit.errors import Terminated

WATCHED = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_reader: list[socket.socket] = []


def received() -> int | None:
    """The first SIGINT/SIGTERM received while ``watch`` is active, if any."""
    for sock in _reader:
        with contextlib.suppress(BlockingIOError, OSError):
            while data := sock.recv(64):
                _received.extend(b for b in data if b in WATCHED and b not in _received)
    return _received[0] if _received else None


def raise_if_received() -> None:
    """Raise the interrupt again if one was received (it may have been swallowed on its first way out)."""
    sig = received()
    if sig == signal.SIGTERM:
        raise Terminated()
    if sig == signal.SIGINT:
        raise KeyboardInterrupt()


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """While inside: SIGTERM raises Terminated (like Ctrl-C's KeyboardInterrupt) and both are recorded.

    Python's default for SIGTERM is to die on the spot, skipping every cleanup
    (temp folders, the Prefect server's stop); as an exception it unwinds.
    Outside the main thread signals cannot be handled; nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    _reader.append(reader)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.set_wakeup_fd(previous_fd)
        received()  # keep what arrived until the next watch
        _reader.remove(reader)
        reader.close()
        writer.close()
