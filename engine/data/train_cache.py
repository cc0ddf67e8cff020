"""Full-mode training images decoded once into memory and augmented in batches on the device.

Decoding a JPEG costs far more than training on it once it is on a GPU, so each training image is decoded
once, at the training resize (short side = the model's resize), into a uint8 tensor kept in RAM; epochs
after the first read it from there. The cache is bounded (a share of this computer's RAM); images past the
bound are decoded again each time they are drawn, so a dataset that does not fit still trains. The
augmentation (random resized crop, flip, TrivialAugment: torchvision's v2 transforms, which work on
tensors) runs on the device, image by image under a seed made of (run seed, epoch, index) so runs are
reproducible; scaling and normalisation run once per batch.

Cardinal uses this on CUDA (see `device_images.device_pipeline_wanted`); on the CPU the DataLoader path stays, since
there decoding and augmenting cost the same wherever they run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence

import torch

from cardinal.engine.data.datasets import Sample
from cardinal.engine.data.decode_ahead import decode_ahead
from cardinal.engine.data.images import load_image

DEFAULT_RAM_SHARE = 0.25


def ram_budget(share: float = DEFAULT_RAM_SHARE, processes: int = 1) -> int:
    """One process's part of `share` of this computer's physical memory, in bytes (0 where it cannot be told);
    `processes` training processes on this machine (torchrun) divide it."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * share / max(processes, 1))
    except (ValueError, OSError, AttributeError):  # not POSIX: psutil is not a dependency, so stream
        return 0


class TrainCache:
    """Each training image as a uint8 (3, H, W) tensor at the training resize, decoded once while the budget lasts."""

    def __init__(self, samples: Sequence[Sample], resize: int, *, budget_bytes: int, workers: int = 4) -> None:
        self.samples = list(samples)
        self.resize = resize
        self.budget_bytes = budget_bytes
        self.workers = max(1, workers)
        self.used_bytes = 0
        self._images: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def cached(self) -> int:
        """How many images are held in memory."""
        return len(self._images)

    def image(self, index: int) -> torch.Tensor:
        """Image `index` at the training resize: from memory, or decoded now (and kept if the budget allows)."""
        with self._lock:
            held = self._images.get(index)
        if held is not None:
            return held
        tensor = self._decode(index)
        with self._lock:
            if index not in self._images and self.used_bytes + tensor.nbytes <= self.budget_bytes:
                self._images[index] = tensor
                self.used_bytes += tensor.nbytes
        return tensor

    def _decode(self, index: int) -> torch.Tensor:
        from torchvision.transforms import functional as F

        image = load_image(self.samples[index][0], draft_size=self.resize)
        image = F.resize(image, self.resize, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        return F.pil_to_tensor(image)

    def batches(self, order: Sequence[int], batch_size: int, *, drop_last: bool
                ) -> Iterator[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
        """(images, labels, indices) for `order` in batches, decoding on threads a batch ahead of the caller."""
        chunks = [list(order[start : start + batch_size]) for start in range(0, len(order), batch_size)]
        if drop_last and chunks and len(chunks[-1]) < batch_size:
            chunks.pop()
        kept = [index for chunk in chunks for index in chunk]
        batches = decode_ahead(kept, self.image, batch_size=batch_size, workers=self.workers)
        with contextlib.closing(batches):
            for batch in batches:
                chunk = [index for index, _ in batch]
                images = [future.result() for _, future in batch]
                labels = torch.tensor([self.samples[index][1] for index in chunk])
                yield images, labels, torch.tensor(chunk)


def augment_batch(images: Sequence[torch.Tensor], seeds: Sequence[int], augment: Callable, preprocess,
                  device: torch.device) -> torch.Tensor:
    """Augment each image on `device` under its own seed, then scale and normalise the batch in one go."""
    from torchvision.transforms import functional as F

    rows = []
    for image, seed in zip(images, seeds, strict=True):
        on_device = image.to(device, non_blocking=True)
        # v2 transforms draw their parameters from torch's default CPU generator: seed it (and only it: not the
        # GPU's, as torch.manual_seed would) per image inside fork_rng, so the result depends on (seed, epoch,
        # index) alone and no other random state moves.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            rows.append(augment(on_device))
    batch = F.convert_image_dtype(torch.stack(rows), torch.float)
    return F.normalize(batch, mean=preprocess.mean, std=preprocess.std)


def image_seed(run_seed: int, epoch: int, index: int) -> int:
    """The seed of one image's augmentation in one epoch (the same rule as the DataLoader path)."""
    return hash((run_seed, epoch, index)) & 0x7FFF_FFFF
