"""The lists a user chooses from, in one place for the CLI and the GUI, importable without torch.

The GUI builds its menus and combo boxes from these before torch has loaded (the window appears first);
the CLI builds its `choices=`; the engine checks values against them. Training's lists (modes,
optimizers, augmentations, stages) live with the recipe in `engine.recipe`, image suffixes with the
loader in `engine.images`; both are torch-free too.
"""

from __future__ import annotations

from enum import Enum

DEFAULT_MODEL = "resnext50_32x4d"


class StartingPoint(str, Enum):
    """Where fine-tuning starts: `cardinal train --base` takes the first two words or a file, the wizard offers
    all four, and `load_base_model` loads any but the app's own model."""

    IMAGENET = "imagenet"  # the architecture's published ImageNet weights (downloaded if needed)
    SCRATCH = "scratch"  # random weights
    FILE = "file"  # a saved model file
    CURRENT = "current"  # the model in use in the app (the wizard only)


def base_kind(base: str) -> StartingPoint:
    """What `cardinal train --base BASE` starts from: its word (imagenet, scratch), else a model file."""
    words = (StartingPoint.IMAGENET, StartingPoint.SCRATCH)
    return next((kind for kind in words if kind.value == base), StartingPoint.FILE)

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
# Classifying may also run a model's INT8 conversion (made by `cardinal quantize`, OpenVINO on the CPU only).
INFERENCE_PRECISIONS: tuple[str, ...] = (*PRECISIONS, "int8")
# Who runs the network: auto (a compiled CPU runtime where it is installed and faster, else PyTorch), or one of them.
BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino", "onnxruntime")
# Heat-map methods: the name used in code and on the command line -> how people write it.
CAM_METHODS: dict[str, str] = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
# The label check's ways to make out-of-fold probabilities (fast: heads on frozen features; full: the last stage
# fine-tuned too), and its folds.
LABEL_CHECKS: tuple[str, ...] = ("fast", "full")
LABEL_CHECK_FOLDS = 5
# What to label next: uncertainty as one minus the top-two margin, or as entropy; how many to suggest.
SUGGESTION_STRATEGIES: tuple[str, ...] = ("margin", "entropy")
SUGGESTIONS = 20
