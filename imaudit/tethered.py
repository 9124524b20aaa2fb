"""Child processes that cannot outlive their parent.

``tethered_command(args)`` turns a command line into one that runs in a new
session (Ctrl-C at a terminal reaches the parent only, which then stops the
child itself) and that the kernel SIGKILLs when the parent dies, however it
died (Linux ``PR_SET_PDEATHSIG``; elsewhere the child is only in its own
session). The signal is armed by this module's ``__main__`` before it execs
the real command, because the alternative, ``subprocess``'s ``preexec_fn``,
can deadlock in a threaded parent. Written by hand: no library sets the
parent-death signal for an exec'd child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def tethered_command(args: list[str]) -> list[str]:
    """``args`` behind the launcher that ties it to this process (run it with start_new_session=True)."""
    return [sys.executable, "-m", "imaudit.tethered", str(os.getpid()), *args]


def _arm_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    _arm_parent_death_signal()
    # The parent may have died between fork and prctl: then nobody would ever kill us.
    if os.getppid() != parent:
        sys.exit(1)
    os.execvp(command[0], command)  # the signal setting survives exec


if __name__ == "__main__":
    _main(sys.argv[1:])
