"""Cardinal's Qt-free engine: models, weights, images, classification, Grad-CAM, training, reports, export.

The few names most callers need are here, loaded on first use: `import cardinal.engine` stays cheap (no
torch), so the GUI can show its window before paying for torch. Everything else lives in the sub-packages,
whose listing is the architecture: models/, data/, inference/, training/, runs/, reports/, export/, cli/.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "CancelToken": "cardinal.engine.progress",
    "CardinalError": "cardinal.engine.errors",
    "Classifier": "cardinal.engine.inference.classifier",
    "evaluate": "cardinal.engine.inference.evaluation",
    "export_model": "cardinal.engine.export.exporter",
    "load_model_file": "cardinal.engine.models.registry",
    "load_pretrained": "cardinal.engine.models.registry",
    "Recipe": "cardinal.engine.training.recipe",
    "scan_dataset": "cardinal.engine.data.datasets",
    "train": "cardinal.engine.training.loop",
}
__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'cardinal.engine' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
