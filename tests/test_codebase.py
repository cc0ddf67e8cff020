"""The rules the codebase keeps, checked like any other behaviour: ruff is clean, the engine's packages import
downwards only and never Qt (import-linter, configured in pyproject.toml), no module imports itself through
others, and the listing stays readable (a few top-level engine modules, none over 400 lines)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"engine": "cardinal.engine", "gui": "cardinal.gui"}
MAX_LINES = 400
MAX_TOP_LEVEL_ENGINE_MODULES = 8


def modules() -> dict[str, Path]:
    """Every module of the import package `cardinal`, by dotted name."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path, name: str) -> set[str]:
    """The project modules `path` imports anywhere in it (function-level imports too: they cycle as well)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}  # `from package import module`
    return targets


def test_no_module_imports_itself_through_others():
    found = modules()
    graph = {name: {target for target in imported(path, name) if target in found and target != name}
             for name, path in found.items()}
    # A package's __init__ being imported by its own modules is how Python works, not a cycle of ours.
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    cycles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_engine_top_level_is_a_few_modules_and_its_packages():
    top = sorted(path.name for path in (ROOT / "engine").glob("*.py") if path.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_ENGINE_MODULES, top


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): count for path in modules().values()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold(tmp_path):
    # import-linter reads packages from folders on the path; in the checkout `cardinal` is a mapping
    # (pyproject's package-dir), so give it a folder of that name that links to ours.
    namespace = tmp_path / "cardinal"
    namespace.mkdir()
    for folder in ("engine", "gui", "assets"):
        (namespace / folder).symlink_to(ROOT / folder, target_is_directory=True)
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    result = subprocess.run([sys.executable, "-c", command, "--no-cache"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
