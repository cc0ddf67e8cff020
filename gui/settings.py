"""Persistent settings (QSettings in an INI file); a damaged file is reset to defaults, never a crash."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
DEFAULT_OPACITY = 0.5


def app_data_dir() -> Path:
    """The per-user folder for Cardinal's settings, log and runs (e.g. ~/.local/share/Cardinal on Linux)."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    path = Path(folder or Path.home() / ".cardinal")
    # Earlier versions also set an organisation name, which doubled the folder (Cardinal/Cardinal); a person
    # who has one keeps it, with their settings, log and runs.
    earlier = path / path.name
    if (earlier / "settings.ini").is_file():
        return earlier
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Text:
    """A text setting stored under `key`; empty when unset."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, settings: Settings, owner: type | None = None) -> str:
        return str(settings._qsettings.value(self.key, "") or "")

    def __set__(self, settings: Settings, value: str) -> None:
        settings._qsettings.setValue(self.key, value)


class Settings:
    """Typed access to the few things Cardinal remembers between runs."""

    model = _Text("model/name")
    weights_file = _Text("model/weights_file")
    mirror = _Text("model/mirror")
    last_folder = _Text("files/last_folder")
    dataset_folder = _Text("files/dataset_folder")  # the wizard's last dataset
    backend = _Text("inference/backend")  # engine.choices.BACKENDS; empty: $CARDINAL_BACKEND, else auto

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else app_data_dir() / "settings.ini"
        self.was_reset = False
        self._qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)
        if self._qsettings.status() != QSettings.Status.NoError:
            log.warning("settings file %s is damaged; starting from defaults", self.path)
            self._qsettings = None
            self.path.unlink(missing_ok=True)
            self._qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)
            self.was_reset = True

    def _get(self, key: str, default, kind):
        value = self._qsettings.value(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    @property
    def top_k(self) -> int:
        return min(max(self._get("view/top_k", DEFAULT_TOP_K, int), 1), 50)

    @top_k.setter
    def top_k(self, k: int) -> None:
        self._qsettings.setValue("view/top_k", int(k))

    @property
    def opacity(self) -> float:
        return min(max(self._get("view/opacity", DEFAULT_OPACITY, float), 0.0), 1.0)

    @opacity.setter
    def opacity(self, value: float) -> None:
        self._qsettings.setValue("view/opacity", float(value))

    @property
    def geometry(self) -> QByteArray | None:
        value = self._qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._qsettings.setValue("window/geometry", value)

    def sync(self) -> None:
        self._qsettings.sync()
