"""requirements.lock is the set the suite runs with: every declared dependency pinned there within its
pyproject range, every range capped, and this environment holding exactly the locked versions."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["dev"]]


def _locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_every_declared_dependency_is_locked_within_its_range():
    pins = _locked()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not in requirements.lock (./scripts/lock.sh)"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), \
            f"{req.name}=={pins[name]} in requirements.lock is outside pyproject's {req.specifier}"


def test_every_declared_range_has_an_upper_bound():
    uncapped = [str(r) for r in _declared() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert uncapped == [], f"ranges without an upper bound (cap them at what the lock proves): {uncapped}"


def test_prefect_scheduler_needs_sqlalchemy_below_2_1():
    """The reason for the lock: Prefect 3.8's scheduler fails on SQLAlchemy 2.1."""
    assert Version(_locked()["sqlalchemy"]) < Version("2.1")
    assert Version(version("sqlalchemy")) < Version("2.1")


def test_this_environment_runs_the_locked_versions():
    """The tests pass with the locked set: what is installed here is what the lock says."""
    pins = _locked()
    differ = []
    for req in _declared():
        name = canonicalize_name(req.name)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            differ.append(f"{req.name}: not installed (lock: {pins.get(name)})")
            continue
        if Version(installed) != Version(pins[name]):
            differ.append(f"{req.name}: installed {installed}, lock {pins[name]}")
    assert differ == [], "run ./scripts/setup.sh (or ./scripts/lock.sh after changing pyproject.toml):\n" + "\n".join(differ)


def test_setup_and_ci_install_from_the_lock():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "-r requirements.lock" in setup and "--no-deps" in setup and "pip check" in setup
    assert "./scripts/setup.sh" in (REPO / "scripts" / "test.sh").read_text()
    assert "./scripts/test.sh" in (REPO / ".ci" / "run").read_text()
