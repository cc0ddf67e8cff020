"""Parity: whether another way of running a model gives Cardinal's own answers on the same probe images.

The probe images (Cardinal's sample photo and generated pictures of other shapes) and the comparison, torch-free:
exports (`engine.export.parity`) and the compiled backends (`engine.inference.backends`) are both checked with
them, the backends also at every start before PyTorch has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING

from cardinal.engine.errors import ParityError

if TYPE_CHECKING:  # loaded where used: the command line reads DEFAULT_TOLERANCE for its --help
    import numpy as np
    from PIL import Image

DEFAULT_TOLERANCE = 1e-4  # largest probability difference an fp32 export or backend may show from Cardinal's own
BF16_TOLERANCE = 1e-3  # the same for a model computing in bf16
PROBE_SIZES = ((320, 240), (200, 300), (97, 61))  # landscape, portrait, smaller than any crop


@dataclass(frozen=True)
class ParityReport:
    """How closely an exported model's probabilities follow Cardinal's on the probe images."""

    images: int
    max_difference: float
    top1_agreement: int  # images whose most probable class is the same
    top5_agreement: int  # images whose five most probable classes are the same set
    tolerance: float
    runtime: str
    # Images whose top-1 differs only between classes that Cardinal itself has within `tolerance` of each other:
    # there a difference the tolerance allows may swap them (untrained networks are all near-ties).
    top1_near_ties: int = 0

    @property
    def passed(self) -> bool:
        return self.max_difference <= self.tolerance

    @property
    def same_answers(self) -> bool:
        """Passed, and every image's most probable class is Cardinal's (near-ties aside)."""
        return self.passed and self.top1_agreement + self.top1_near_ties == self.images

    def summary(self) -> str:
        """One line for a terminal or a status bar."""
        return (f"largest probability difference {self.max_difference:.2e} (tolerance {self.tolerance:.0e}), "
                f"top-1 agreement {self.top1_agreement}/{self.images}"
                f"{f' (+{self.top1_near_ties} near-ties)' if self.top1_near_ties else ''}, "
                f"top-5 agreement {self.top5_agreement}/{self.images} ({self.runtime})")

    def to_dict(self) -> dict[str, object]:
        return {"images": self.images, "max_probability_difference": self.max_difference,
                "top1_agreement": self.top1_agreement, "top5_agreement": self.top5_agreement,
                "top1_near_ties": self.top1_near_ties, "tolerance": self.tolerance, "runtime": self.runtime,
                "reference": "Cardinal's PyTorch classifier, fp32 on the CPU"}


def probe_images() -> list[Image.Image]:
    """Cardinal's sample photo and a few generated pictures of other shapes and sizes (deterministic)."""
    import numpy as np
    from PIL import Image

    from cardinal.engine.data.images import load_image

    images = [load_image(str(files("cardinal.assets").joinpath("sample.jpg")))]
    rng = np.random.default_rng(0)
    for width, height in PROBE_SIZES:
        y, x = np.mgrid[0:height, 0:width]
        gradient = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
        noise = rng.integers(0, 56, (height, width, 3))
        images.append(Image.fromarray((gradient + noise).astype(np.uint8), "RGB"))
    return images


def compare_probabilities(expected: np.ndarray, batch: np.ndarray, single: np.ndarray, *, tolerance: float,
                          runtime: str) -> ParityReport:
    """How closely `batch` (all probe images at once) and `single` (the first alone) follow `expected`."""
    import numpy as np

    batch = np.asarray(batch, dtype=np.float64)
    single = np.asarray(single, dtype=np.float64)
    if batch.shape != expected.shape or single.shape != expected[:1].shape:
        raise ParityError(f"the exported model answered with shape {batch.shape} (and {single.shape} for one image); "
                         f"expected {expected.shape}")
    difference = max(float(np.abs(batch - expected).max()), float(np.abs(single - expected[:1]).max()))
    if not np.isfinite(batch).all() or not np.isfinite(single).all():
        difference = float("inf")
    agree = batch.argmax(1) == expected.argmax(1)
    rows = np.arange(len(expected))
    margin = expected[rows, expected.argmax(1)] - expected[rows, batch.argmax(1)]
    return ParityReport(
        images=len(expected),
        max_difference=difference,
        top1_agreement=int(agree.sum()),
        top5_agreement=sum(_top5(a) == _top5(b) for a, b in zip(batch, expected, strict=True)),
        tolerance=tolerance,
        runtime=runtime,
        top1_near_ties=int((~agree & (margin <= tolerance)).sum()),
    )


def _top5(probabilities: np.ndarray) -> set[int]:
    import numpy as np

    return {int(index) for index in np.argsort(-probabilities, kind="stable")[:5]}
