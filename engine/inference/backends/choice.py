"""The backend a user asked for: --backend, the setting, or $CARDINAL_BACKEND (importable without numpy or torch,
so `--help` answers at once)."""

from __future__ import annotations

import os

from cardinal.engine.choices import BACKENDS
from cardinal.engine.errors import CardinalError

BACKEND_VARIABLE = "CARDINAL_BACKEND"  # the default for --backend and for the app's setting


def default_backend() -> str:
    """$CARDINAL_BACKEND, else 'auto'. A value that names no backend is kept, so that `check_backend` refuses it
    (naming the variable) rather than it being ignored without a word."""
    return os.environ.get(BACKEND_VARIABLE, "").strip().lower() or "auto"


def check_backend(requested: str) -> str:
    if requested not in BACKENDS:
        source = f" (from ${BACKEND_VARIABLE})" if requested == default_backend() != "auto" else ""
        raise CardinalError(f"unknown backend '{requested}'{source}; choose one of {', '.join(BACKENDS)}")
    return requested
