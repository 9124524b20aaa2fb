"""The registry watcher's engine: what a poll announces, and the markers `imaudit release` leaves.

Known answers on small registry views (no server needed); the watcher against a
real MLflow server and Prefect is tests/orchestration/test_mlflow_watcher.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from orch_helpers import ARCH, DATASET, tiny_checkpoint

from imaudit.errors import BadInputError
from imaudit.flows import release as release_flow
from imaudit.models import Registry, watch
from imaudit.models.watch import RegistryView

URI = "http://mlflow.test:5000"


def _mlflow(versions: dict, aliases: dict | None = None) -> RegistryView:
    return RegistryView(versions=versions, aliases=aliases or {})


def test_a_first_look_records_without_announcing():
    now = {URI: _mlflow({"net": {"1": DATASET, "2": DATASET}}, {"net": {"champion": "2"}})}
    found = watch.changes({}, now)
    assert found.first_look == [URI] and found.announce == [] and found.skipped == []


def test_new_versions_and_alias_moves_are_one_announcement_per_concrete_version():
    before = {URI: _mlflow({"net": {"1": DATASET}, "other": {"1": None}}, {"net": {"champion": "1"}})}
    now = {URI: _mlflow({"net": {"1": DATASET, "2": DATASET, "3": DATASET}, "other": {"1": None, "2": None}},
                        {"net": {"champion": "3", "staging": "1"}})}
    found = watch.changes(before, now)
    got = {a.ref: a.reason for a in found.announce}
    # v3 is new and the alias moved onto it: one announcement; a new alias on v1 is a release of v1.
    assert got == {"mlflow:models:/net/2": "new version", "mlflow:models:/net/3": "new version",
                   "mlflow:models:/net/1": "alias staging: new -> 1"}
    assert all(a.dataset == DATASET and a.registry == URI for a in found.announce)
    assert found.skipped == [f"{URI} other/2: has no imaudit.dataset tag, not audited"]
    # Repeating the poll (after a failure) announces the same things with the same event ids.
    again = watch.changes(before, now)
    assert [a.event_id for a in again.announce] == [a.event_id for a in found.announce]
    assert len({a.event_id for a in found.announce}) == 3


def test_an_alias_moving_back_is_announced_and_an_unchanged_registry_is_quiet():
    before = {URI: _mlflow({"net": {"1": DATASET, "2": DATASET}}, {"net": {"champion": "2"}})}
    moved = {URI: _mlflow({"net": {"1": DATASET, "2": DATASET}}, {"net": {"champion": "1"}})}
    (a,) = watch.changes(before, moved).announce
    assert (a.ref, a.reason) == ("mlflow:models:/net/1", "alias champion: 2 -> 1")
    assert watch.changes(moved, moved).announce == []
    # A removed alias or version announces nothing.
    gone = {URI: _mlflow({"net": {"1": DATASET}}, {})}
    assert watch.changes(moved, gone).announce == []


def test_state_round_trips_through_the_watch_folder():
    views = {URI: _mlflow({"net": {"1": DATASET}}, {"net": {"champion": "1"}}),
             watch.IMAUDIT: RegistryView(versions={"tiny": {"1": DATASET}})}
    assert watch.load_state() == {}
    watch.save_state(views)
    assert watch.load_state() == views


def test_an_unreachable_registry_keeps_its_view_and_is_reported():
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    previous = {dead: _mlflow({"net": {"1": DATASET}})}
    views, failed = watch.look([dead], imaudit_registry=True, previous=previous)
    assert views[dead] == previous[dead] and failed == {dead: "the tracking server is unreachable"}
    assert views[watch.IMAUDIT] == RegistryView()


def _release(tmp_path: Path, version: str) -> release_flow.ReleaseRequest:
    return release_flow.ReleaseRequest(name="tiny", version=version, arch=ARCH, checkpoint=tiny_checkpoint(tmp_path),
                                       dataset=DATASET)


def test_imaudit_releases_announced_by_the_command_are_not_announced_again(tmp_path, monkeypatch):
    first = {watch.IMAUDIT: watch.imaudit_view()}
    assert first[watch.IMAUDIT] == RegistryView()
    real = release_flow.emit_release_event
    # 1: announced by the command (a stand-in for a reachable Prefect server says the event went out).
    monkeypatch.setattr(release_flow, "emit_release_event", lambda manifest: release_flow.Emission(True, "sent", ("e-1",)))
    release_flow.release_and_announce(_release(tmp_path, "1"))
    # 2: the command could not announce it (no Prefect server configured); 3: --no-emit.
    monkeypatch.setattr(release_flow, "emit_release_event", real)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    _, _, failed = release_flow.release_and_announce(_release(tmp_path, "2"))
    assert failed is not None and not failed.sent
    assert release_flow.release_and_announce(_release(tmp_path, "3"), emit=False)[2] is None

    assert watch.announced("tiny", "1") and not watch.announced("tiny", "2") and not watch.announced("tiny", "3")
    now = {watch.IMAUDIT: watch.imaudit_view(first[watch.IMAUDIT])}
    found = watch.changes(first, now)
    assert sorted(a.ref for a in found.announce) == ["release:tiny@2", "release:tiny@3"]
    assert found.skipped == ["imaudit tiny/1: announced by imaudit release"]
    assert Registry().get("tiny", "2").dataset == DATASET


def test_a_release_refused_as_bad_input_leaves_no_claim(tmp_path):
    req = _release(tmp_path, "1")
    release_flow.release_model(req)
    other = req.model_copy(update={"checkpoint": tiny_checkpoint(tmp_path, seed=5)})
    with pytest.raises(BadInputError, match="exists with digest"):
        release_flow.release_and_announce(other)
    assert not watch.announced("tiny", "1")
    with pytest.raises(BadInputError, match="release name"):
        watch.claim("../x", "1")


def test_with_a_shared_store_a_worker_sees_the_markers_of_a_release_made_elsewhere(tmp_path, monkeypatch):
    """`imaudit release` on one machine, the watcher on a worker with another home: both read the store."""
    monkeypatch.setenv("IMAUDIT_STORAGE", (tmp_path / "store").as_uri())
    monkeypatch.setenv("IMAUDIT_HOME", str(tmp_path / "developer"))
    first = {watch.IMAUDIT: watch.imaudit_view()}
    monkeypatch.setattr(release_flow, "emit_release_event", lambda manifest: release_flow.Emission(True, "sent", ("e-1",)))
    release_flow.release_and_announce(_release(tmp_path, "1"))
    assert release_flow.release_and_announce(_release(tmp_path, "2"), emit=False)[2] is None

    monkeypatch.setenv("IMAUDIT_HOME", str(tmp_path / "worker"))
    found = watch.changes(first, {watch.IMAUDIT: watch.imaudit_view()})
    assert [a.ref for a in found.announce] == ["release:tiny@2"]
    assert found.skipped == ["imaudit tiny/1: announced by imaudit release"]
    assert (tmp_path / "store" / "watch" / "announced" / "tiny" / "1.json").is_file()
    assert not (tmp_path / "developer" / "watch").exists() and not (tmp_path / "worker" / "watch").exists()
