"""`bench --profile`: where a row's time went, on work whose answer is known."""

from __future__ import annotations

import time

import numpy as np

from imaudit.bench.methods import MethodRow, profiled
from imaudit.bench.profiling import where_time_goes


def _busy(seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def _work() -> None:
    _busy(0.15)
    np.sort(np.random.default_rng(0).random(3_000_000))


def test_profile_names_the_functions_and_packages_that_took_the_time():
    p = where_time_goes(_work)
    top = {f["function"]: f["share"] for f in p["top"]}
    busy = next(k for k in top if k.endswith("(_busy)"))
    assert busy.startswith("tests/bench/test_profiling.py:") or "test_profiling.py" in busy
    assert "numpy.ndarray.sort" in top
    # shares of one run's wall time: each under 1, together no more than the whole
    assert 0 < sum(top.values()) <= 1.0 + 1e-6 and sum(p["packages"].values()) <= 1.0 + 1e-6
    assert p["packages"]["numpy"] >= top["numpy.ndarray.sort"] - 1e-9
    assert p["seconds"] >= 0.15


def test_only_rows_under_the_target_are_profiled():
    calls = []

    def row(eff: float) -> MethodRow:
        return MethodRow("m", 4, 1.0, 1, 1, 2, 4, 4, eff, None)

    assert profiled(row(0.9), lambda: calls.append(1), below=0.8).profile is None
    assert profiled(row(0.5), lambda: calls.append(1), below=None).profile is None
    assert calls == []
    slow = profiled(row(0.5), lambda: calls.append(1), below=0.8)
    assert calls == [1] and slow.profile is not None and slow.profile["seconds"] > 0
