"""Atomic folders and the sweep of temp folders left by killed audits."""

from __future__ import annotations

import os
import time

import pytest

from imaudit.io import atomic_dir, sweep_stale_tmp


def test_atomic_dir_renames_on_success_and_vanishes_on_failure(tmp_path):
    with atomic_dir(tmp_path / "a") as work:
        (work / "x.txt").write_text("ok")
    assert (tmp_path / "a" / "x.txt").read_text() == "ok"
    with pytest.raises(ValueError), atomic_dir(tmp_path / "b") as work:
        (work / "half.txt").write_text("half")
        raise ValueError("boom")
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".tmp-*"))


def test_sweep_removes_only_old_temp_folders(tmp_path):
    old, fresh, real = tmp_path / ".tmp-old-1", tmp_path / ".tmp-new-2", tmp_path / "audit-3"
    for p in (old, fresh, real):
        p.mkdir()
    past = time.time() - 3600
    os.utime(old, (past, past))
    os.utime(real, (past, past))
    assert sweep_stale_tmp(tmp_path, older_than_s=600) == [old]
    assert not old.exists() and fresh.exists() and real.exists()


def test_atomic_dir_without_replace_keeps_the_first_finished_folder(tmp_path):
    final = tmp_path / "set"
    with atomic_dir(final, replace=False) as a, atomic_dir(final, replace=False) as b:
        (a / "who").write_text("a")
        (b / "who").write_text("b")
    # b finished first (inner context), so b's folder is the one kept; a's temp folder is gone.
    assert (final / "who").read_text() == "b"
    assert not list(tmp_path.glob(".tmp-*"))
