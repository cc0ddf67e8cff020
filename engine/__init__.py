"""Cardinal's Qt-free engine: models, weights, images, classification, Grad-CAM, training.

Importing this package is cheap (torch loads only when a submodule that needs it is imported), so the
GUI can show its window before paying for torch.
"""

__version__ = "0.1.0"
