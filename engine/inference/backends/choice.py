"""The backend a user asked for: --backend, the setting, or $CARDINAL_BACKEND (importable without numpy or torch,
so `--help` answers at once)."""

from __future__ import annotations

import os

from cardinal.engine.choices import BACKENDS
from cardinal.engine.errors import CardinalError

BACKEND_VARIABLE = "CARDINAL_BACKEND"  # the default for --backend and for the app's setting


def default_backend() -> str:
    """$CARDINAL_BACKEND if it names a backend, else 'auto'."""
    value = os.environ.get(BACKEND_VARIABLE, "auto").strip().lower()
    return value if value in BACKENDS else "auto"


def check_backend(requested: str) -> str:
    if requested not in BACKENDS:
        raise CardinalError(f"unknown backend '{requested}'; choose one of {', '.join(BACKENDS)}")
    return requested
