"""The one plug-in idiom (imaudit.registry): register by decorator, discover by package, fail helpfully."""

from __future__ import annotations

import sys
import textwrap

import pytest

from imaudit.errors import BadInputError
from imaudit.registry import Registry


def test_register_get_and_order() -> None:
    reg: Registry[type] = Registry("widget")

    @reg.register("b")
    class B: ...

    @reg.register()
    class A:
        name = "a"

    assert reg.names() == ["b", "a"]
    assert reg.get("a") is A and "b" in reg and "c" not in reg
    with pytest.raises(BadInputError, match=r"unknown widget 'aa'.*did you mean a.*known: b, a"):
        reg.get("aa")


def test_two_different_things_under_one_name_are_refused() -> None:
    reg: Registry[type] = Registry("widget")
    reg.register("x")(type("One", (), {}))
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("x")(type("Two", (), {}))


def test_modules_of_the_package_are_discovered(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from imaudit.registry import Registry\nREG = Registry('plug', package='plugpkg')\n")
    for name in ("one", "two"):
        (pkg / f"{name}.py").write_text(textwrap.dedent(f"""
            from plugpkg import REG

            @REG.register("{name}")
            def {name}():
                return "{name}"
        """))
    (pkg / "_private.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import plugpkg

        assert sorted(plugpkg.REG.names()) == ["one", "two"]
        assert plugpkg.REG.get("two")() == "two"
    finally:
        for mod in [m for m in sys.modules if m == "plugpkg" or m.startswith("plugpkg.")]:
            del sys.modules[mod]


def test_every_finding_code_raised_in_the_code_is_declared() -> None:
    """A finding raised anywhere must have a kind (group, meaning, action) for the report to explain it."""
    import re
    from pathlib import Path

    from imaudit.audits.findings import KINDS

    repo = Path(__file__).resolve().parents[2]
    raised = set()
    for folder in ("audits", "models", "reports", "flows", "tasks", "imaudit"):
        for path in (repo / folder).rglob("*.py"):
            raised |= set(re.findall(r"code=\"([a-z][a-z0-9-]+)\"", path.read_text(encoding="utf-8")))
    assert raised, "no finding codes found: the pattern is stale"
    missing = sorted(c for c in raised if c not in KINDS)
    assert not missing, f"declare these finding codes in imaudit.audits.findings: {missing}"
    for code, kind in KINDS.items():
        assert kind.group in {"model", "data", "explainer", "run"} and kind.meaning and kind.action, code


def test_a_new_finding_kind_module_is_picked_up_by_registration(tmp_path) -> None:
    """The README's one-file finding kind, dropped into audits/findings: declared, grouped, explained."""
    from readme_examples import dropped_in, readme_example

    from imaudit.audits.findings import KINDS, kind_of

    source = readme_example("audits/findings/image_quality.py")
    with dropped_in(KINDS, "imaudit.audits.findings", "image_quality.py", source, tmp_path):
        assert "low-contrast-images" in KINDS
        kind = kind_of("low-contrast-images")
        assert (kind.group, kind.title) == ("data", "Low-contrast images") and kind.meaning and kind.action
        assert "overfitting" in KINDS  # the package's own kinds are still there
    assert "low-contrast-images" not in KINDS
