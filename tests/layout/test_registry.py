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
