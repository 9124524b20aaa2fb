"""The repository's top level is the architecture: each folder installs as imaudit.<folder>.

These tests keep that true: pyproject's explicit package list matches the
folders, code never imports a top-level folder by its bare name (one file
would then load as two modules), the wheel carries the report templates, and
the imaudit modules import each other without cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
TOP_LEVEL = sorted(d for name, d in PACKAGE_DIR.items() if name != "imaudit")


def _python_files() -> list[Path]:
    roots = [REPO / d for d in (*PACKAGE_DIR.values(), "tests", "scripts")]
    return [p for r in roots if r.is_dir() for p in r.rglob("*.py") if "__pycache__" not in p.parts]


def _module_name(path: Path) -> str | None:
    """The installed module name of a source file, or None outside the package."""
    rel = path.relative_to(REPO)
    for name, folder in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[1])):
        if rel.parts[0] == folder:
            parts = [*name.split("."), *rel.with_suffix("").parts[1:]]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def test_the_card_folders_are_at_the_top_level() -> None:
    for folder in ("flows", "tasks", "audits", "models", "reports"):
        assert (REPO / folder / "__init__.py").is_file(), folder
        assert PACKAGE_DIR[f"imaudit.{folder}"] == folder
    core = {p.name for p in (REPO / "imaudit").iterdir() if p.suffix == ".py"}
    # exits (exit codes), runlog (the run's log file), interrupts (SIGINT/SIGTERM) and tethered
    # (children that die with the CLI) are the CLI's plumbing, used by every command and the flows.
    assert core <= {"__init__.py", "cli.py", "errors.py", "io.py", "paths.py", "registry.py", "storage.py",
                    "exits.py", "runlog.py", "interrupts.py", "tethered.py"}, core


@pytest.mark.parametrize("folder", sorted(set(PACKAGE_DIR.values())))
def test_each_top_level_folder_says_what_belongs_there(folder: str) -> None:
    doc = ast.get_docstring(ast.parse((REPO / folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "belongs" in doc and "does not" in doc, f"{folder}/__init__.py: say what belongs there and what does not"


def test_package_list_matches_the_folders() -> None:
    found = set()
    for name, folder in PACKAGE_DIR.items():
        for init in (REPO / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert sorted(found) == sorted(SETUPTOOLS["packages"])


def test_no_bare_imports_of_top_level_folders() -> None:
    bare = set(TOP_LEVEL)
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in bare]
    assert not offenders, "import these as imaudit.<folder>: " + ", ".join(offenders)


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: imports for annotations only, never executed."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.Module, include_local: bool) -> list[ast.AST]:
    """Statements that can import at run time: module level only, or everywhere (functions too)."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        out.append(node)
        if include_local or isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _import_graph(include_local: bool) -> dict[str, set[str]]:
    """imaudit module -> imaudit modules it imports (module level, or anywhere, function-local too)."""
    files = {m: p for p in _python_files() if (m := _module_name(p))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _runtime_nodes(tree, include_local):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_imports_have_no_cycles() -> None:
    """No cycle among imaudit modules, counting imports inside functions too.

    A function-local import cannot hide a cycle: where one module needs
    another at run time, the dependency is real and must point one way.
    """
    assert _cycles(_import_graph(include_local=True)) == []


def test_the_cycle_check_sees_function_local_imports() -> None:
    """The graph follows imports inside functions (and skips TYPE_CHECKING blocks), so the test above can fail."""
    tree = ast.parse(
        "import os\n"
        "if TYPE_CHECKING:\n    import typing_only\n"
        "try:\n    import guarded\nexcept ImportError:\n    pass\n"
        "def f():\n    import local\n"
    )
    names = lambda local: sorted(a.name for n in _runtime_nodes(tree, local) if isinstance(n, ast.Import) for a in n.names)  # noqa: E731
    assert names(False) == ["guarded", "os"]
    assert names(True) == ["guarded", "local", "os"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stage_modules_import_only_earlier_stages() -> None:
    """audits/stages: each stage imports only stages before it (its inputs), never a later one."""
    order = ["inputs", "records", "identify", "check_data", "predict", "check_outputs", "diagnose", "sample",
             "explain", "gallery", "insights", "counterfactuals"]
    stages = {p.stem for p in (REPO / "audits" / "stages").glob("*.py") if p.stem != "__init__"}
    assert stages == set(order), "add the new stage to this order (and to audits/stages/__init__.py)"
    graph = _import_graph(include_local=True)
    prefix = "imaudit.audits.stages."
    for i, name in enumerate(order):
        later = {prefix + m for m in order[i + 1:]}
        assert not graph[prefix + name] & later, f"{name} imports a later stage: {graph[prefix + name] & later}"


@pytest.mark.slow
def test_wheel_holds_every_package_and_the_templates(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("imaudit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in SETUPTOOLS["packages"]:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, pkg
    templates = {p.name for p in (REPO / "reports" / "templates").iterdir()}
    assert {f"imaudit/reports/templates/{t}" for t in templates} <= names
    assert "imaudit/flows/on_release.py" in names and "imaudit/cli.py" in names
