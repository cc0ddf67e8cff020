"""The files Cardinal ships (package `cardinal.assets`), found through importlib.resources so they are the
same in a source checkout, an installed wheel and the PyInstaller build."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset(name: str) -> Path:
    """One shipped file, e.g. 'cardinal.png', as a path on disk."""
    path = Path(str(files("cardinal.assets").joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"Cardinal's installation is missing {name} (expected at {path}); reinstall it")
    return path
