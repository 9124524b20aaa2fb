"""Where a bench row's time goes: one extra, untimed run under cProfile (``imaudit bench --profile``).

A missed target is explained by measurement, not by guess: the row's work is run
once more under the standard library's profiler and the functions with the most
self time are reported as shares of that run's wall time, along with the share
per package (torch, numpy, skimage, shap, ...). cProfile slows Python-level code
more than the C kernels under it, so Python-heavy parts appear somewhat larger
than they are in the timed run; the profiled run is never used for a ratio.
cProfile sees the calling thread only: time spent in worker threads (the
prediction row's decoding) is not in it.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

_SITE = re.compile(r".*(?:site|dist)-packages/")
_BUILTIN = re.compile(r"<(?:built-in method|method) '?([\w.]+)'?(?: of '([\w.]+)' objects| of .* at 0x[0-9a-f]+)?>")


def _label(path: str, line: int, func: str) -> tuple[str, str]:
    """(function label, package) for one pstats key."""
    if path == "~":  # a C function: "<built-in method torch.conv2d>", "<method 'copy_' of 'torch._C.TensorBase' objects>"
        m = _BUILTIN.match(func)
        if m:
            name, owner = m.group(1), m.group(2)
            full = f"{owner}.{name}" if owner else name
            # a C function bound to no module ("conv2d of type object at 0x..."): torch's ops are the usual ones
            return full, full.split(".", 1)[0] if "." in full else "C functions"
        return func, "python"
    rel = _SITE.sub("", path)
    if rel == path:  # not an installed package: this repository (imaudit) or the standard library
        rel = re.sub(r".*/(imaudit|audits|bench|flows|models|reports|tasks)/", r"\1/", path)
        pkg = "imaudit" if rel != path else "python"
    else:
        pkg = rel.split("/", 1)[0]
    return f"{rel}:{line}({func})", pkg.removesuffix(".py")


def where_time_goes(fn: Callable[[], Any], top: int = 6) -> dict[str, Any]:
    """Run ``fn`` once under cProfile; its wall seconds, the ``top`` functions by self time and the
    self time per package, both as shares of wall time."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    wall = max(time.perf_counter() - t0, 1e-9)
    funcs: list[tuple[float, str]] = []
    packages: dict[str, float] = {}
    for (path, line, func), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(prof).stats.items():
        label, pkg = _label(path, line, func)
        funcs.append((tottime, label))
        packages[pkg] = packages.get(pkg, 0.0) + tottime
    funcs.sort(reverse=True)
    return {
        "seconds": wall,
        "top": [{"function": f, "share": t / wall} for t, f in funcs[:top]],
        "packages": {k: v / wall for k, v in sorted(packages.items(), key=lambda kv: -kv[1]) if v / wall >= 0.01},
    }
