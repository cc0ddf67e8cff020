"""The engine must never import Qt: enforced here, not by review."""

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "superqt", "qtpy", "cardinal.gui")


def forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN)


def test_no_engine_file_imports_qt_or_gui():
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ENGINE)}: {n}" for n in names if forbidden(n)]
    assert offenders == []


def test_importing_every_engine_module_loads_no_qt():
    # Every module, sub-packages included (rglob): a module added to a new sub-package is checked too.
    parts = [p.relative_to(ENGINE).with_suffix("").parts for p in ENGINE.rglob("*.py")]
    modules = sorted(".".join(("cardinal", "engine", *(part[:-1] if part[-1] == "__init__" else part)))
                     for part in parts if part != ("__init__",))
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN!r})]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ENGINE.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_engine_package_is_cheap():
    # The GUI shows its window before paying for torch; `import cardinal.engine` must not pull it in.
    code = "import sys, cardinal.engine; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ENGINE.parent).returncode == 0


def test_the_public_names_load_on_first_use_and_only_what_they_need():
    # `cardinal.engine` names the few things callers need; touching a light one must not load torch.
    code = ("import sys, cardinal.engine as engine\n"
            "assert 'CancelToken' in dir(engine) and 'Classifier' in engine.__all__\n"
            "engine.CancelToken(); engine.Recipe(); issubclass(engine.CardinalError, Exception)\n"
            "assert 'torch' not in sys.modules, 'a light name loaded torch'\n"
            "missing = [name for name in engine.__all__ if getattr(engine, name, None) is None]\n"
            "assert not missing, missing\n"
            "assert engine.Classifier.__module__ == 'cardinal.engine.inference.classifier'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ENGINE.parent)
    assert result.returncode == 0, result.stderr
