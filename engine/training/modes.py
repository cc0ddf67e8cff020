"""The two ways to fine-tune, each a small strategy over the one epoch loop in `engine.training.loop`.

Fast: the network stays frozen; its pooled features are computed once per image and only the head trains.
Full: the network (from a chosen stage on) trains on augmented images.
A mode says what trains, where batches come from, how a batch becomes logits, and how often saving pays.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from cardinal.engine.data.datasets import ImageDataset, Sample
from cardinal.engine.data.device_images import device_pipeline_wanted
from cardinal.engine.data.train_cache import TrainCache, augment_batch, device_augmentation, image_seed, ram_budget
from cardinal.engine.errors import Cancelled
from cardinal.engine.inference.device import autocast_for, preferred_memory_format
from cardinal.engine.inference.network import forward_features, pooled_features
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.models.weights import StateDict
from cardinal.engine.progress import CancelToken
from cardinal.engine.training.distributed import Team
from cardinal.engine.training.events import FeatureProgress
from cardinal.engine.training.recipe import TRAINABLE_FROM, Recipe

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingMode:
    """What the shared loop asks of a mode; the base holds what both modes share."""

    #: Seconds between saves of models and checkpoint (0: after every epoch).
    save_interval_s: float = 0.0

    def __init__(self, model: LoadedModel, recipe: Recipe, device: torch.device, dtype: torch.dtype,
                 generator: torch.Generator, team: Team | None = None) -> None:
        self.model, self.recipe, self.device, self.dtype = model, recipe, device, dtype
        self.network = model.network.to(device)
        self.generator = generator
        self.trainable: list[nn.Parameter] = []
        # Under torchrun: this process's place, the DDP wrapper that trains, and the training images (indices
        # into the training split) that reached this rank's model this epoch.
        self.team = team
        self.trainer: nn.Module | None = None
        self.seen_indices: list[int] = []

    def prepare(self, train_samples: Sequence[Sample], val_samples: Sequence[Sample],
                cancel: CancelToken | None) -> Iterator[FeatureProgress]:
        """Get ready to train (Fast computes its features here, yielding progress)."""
        raise NotImplementedError

    def train_size(self) -> int:
        raise NotImplementedError

    def train_batches(self, batch_size: int, epoch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def val_batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train_mode(self) -> None:
        raise NotImplementedError

    def trained_module(self) -> nn.Module:
        """The module whose weights change (the head, or the whole network)."""
        raise NotImplementedError

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The optimizer's parameter groups: weight decay only on weights that multiply (never on norm layers'
        scales and shifts, nor on biases), each group with its share `lr_scale` of the learning rate."""
        return _decay_groups(self.trainable, weight_decay, 1.0)

    def set_head_only(self, head_only: bool) -> None:
        """Train the new head alone (True) or everything the mode trains (False); only Full mode has a choice."""

    def weights(self) -> StateDict:
        """A detached copy of the trained weights (for checkpoints and the best/last-good snapshots)."""
        return {key: value.detach().clone() for key, value in self.trained_module().state_dict().items()}

    def load_weights(self, weights: StateDict) -> None:
        self.trained_module().load_state_dict(weights)

    def eval_mode(self) -> None:
        self.trained_module().eval()

    def autocast(self):
        return autocast_for(self.device, self.dtype)

    def _through(self, module: nn.Module) -> nn.Module:
        """The DDP wrapper while training in a team (it averages gradients), else `module` itself."""
        return self.trainer if self.trainer is not None and torch.is_grad_enabled() else module

    def _saw(self, indices: torch.Tensor) -> None:
        if self.team is not None:
            self.seen_indices += indices.tolist()

    def _shard_size(self, count: int) -> int:
        return count if self.team is None else math.ceil(count / self.team.world_size)

    def workers(self) -> int:
        """Data-loading processes: the recipe's choice, else none on the CPU and up to 8 with a GPU."""
        if self.recipe.num_workers is not None:
            return self.recipe.num_workers
        return 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 2)


class FastMode(TrainingMode):
    """Frozen backbone, features cached once, a linear head trained on them (seconds per run)."""

    # Each epoch takes milliseconds; writing a 90 MB model after each would dominate, so save at most
    # this often (and always at the end, on cancel, and on a stop).
    save_interval_s = 10.0

    def prepare(self, train_samples, val_samples, cancel):
        memory_format = preferred_memory_format(self.device, self.dtype)
        self.network = self.network.to(memory_format=memory_format).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        preprocess = self.model.preprocess
        if self.team is not None:  # each rank computes its share of the features; all ranks get them all
            train_samples, val_samples = self.team.shard(train_samples), self.team.shard(val_samples)
        total, done = len(train_samples) + len(val_samples), 0
        from cardinal.engine.inference.backends.features import compiled_features

        compiled = compiled_features(self.model, self.device, self.dtype, total)  # None: PyTorch computes them
        cached = []
        for samples in (train_samples, val_samples):
            loader = DataLoader(ImageDataset(samples, preprocess, preprocess.resize_size[0]),
                                batch_size=self.recipe.eval_batch_size, num_workers=self.workers(),
                                generator=torch.Generator())
            chunks, labels = [], []
            for batch, batch_labels in loader:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("training was cancelled while computing features; nothing new was saved")
                if compiled is not None:
                    chunks.append(compiled(batch).to(self.device))
                else:
                    with torch.inference_mode(), self.autocast():
                        maps = forward_features(self.network,
                                                batch.to(self.device).contiguous(memory_format=memory_format))
                        chunks.append(pooled_features(self.network, maps).float())
                labels.append(batch_labels.to(self.device))
                done += len(batch)
                yield FeatureProgress(done, total)
            if not chunks:  # a rank's share of a tiny split can be empty
                chunks = [torch.empty(0, self.network.fc.in_features, device=self.device)]
                labels = [torch.empty(0, dtype=torch.long, device=self.device)]
            cached.append(self._everyones(torch.cat(chunks), torch.cat(labels)))
        self.train_data, self.val_data = cached
        for parameter in self.network.fc.parameters():
            parameter.requires_grad_(True)
        self.trainable = list(self.network.fc.parameters())
        if self.team is not None:
            self.trainer = self.team.wrap(self.network.fc)

    def _everyones(self, features: torch.Tensor, labels: torch.Tensor) -> Batch:
        if self.team is None:
            return features, labels
        shares = self.team.gather((features.cpu(), labels.cpu()))
        return (self.team.unshard([f for f, _ in shares]).to(self.device),
                self.team.unshard([label for _, label in shares]).to(self.device))

    def train_size(self) -> int:
        return self._shard_size(len(self.train_data[1]))

    def train_batches(self, batch_size, epoch):
        features, labels = self.train_data
        order = torch.randperm(len(labels), generator=self.generator)
        if self.team is not None:
            order = self.team.shard_order(order)
        order = order.to(features.device)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            self._saw(index)
            yield features[index], labels[index]

    def val_batches(self):
        features, labels = self.val_data
        if self.team is not None:  # each rank validates its share; the loop sums the counts
            features, labels = self.team.shard(features), self.team.shard(labels)
        size = self.recipe.eval_batch_size
        for start in range(0, len(labels), size):
            yield features[start : start + size], labels[start : start + size]

    def forward(self, inputs):
        return self._through(self.network.fc)(inputs)

    def trained_module(self):
        return self.network.fc

    def train_mode(self):
        self.network.fc.train()


class FullMode(TrainingMode):
    """The network trains from `trainable_from` on, on augmented images; earlier stages stay frozen. With a
    recipe's `freeze_epochs` the new head first trains alone, and `early_lr_factor` gives earlier stages lower
    rates (fastai's `fine_tune`: discriminative learning rates)."""

    head_only = False
    # A ResNeXt-50's models and checkpoint are about 470 MB: written after every epoch of a small folder they
    # would cost more than the epoch's training; a run killed loses at most this much (and always saves at the end).
    save_interval_s = 60.0

    def prepare(self, train_samples, val_samples, cancel):
        self.network = self.network.to(memory_format=torch.channels_last)
        frozen_until = TRAINABLE_FROM.index(self.recipe.trainable_from)  # 'all' 0, 'layer1' 1, ...
        self.frozen_modules = [self.network.conv1, self.network.bn1] if frozen_until else []
        self.frozen_modules += [getattr(self.network, f"layer{index}") for index in range(1, frozen_until)]
        for module in self.frozen_modules:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.trainable = [p for p in self.network.parameters() if p.requires_grad]
        if self.team is not None:
            # A head-only phase leaves the rest without gradients for a while: DDP must look for them each step.
            self.trainer = self.team.wrap(self.network, find_unused=bool(self.recipe.freeze_epochs))
            val_samples = self.team.shard(val_samples)
        preprocess = self.model.preprocess
        augment = train_transform(preprocess, self.recipe.augmentation)
        self.train_dataset = _SeededImages(ImageDataset(train_samples, augment, preprocess.resize_size[0]),
                                           self.recipe.seed)
        self.cache = None
        if device_pipeline_wanted(self.device):  # decode once into RAM, augment on the device
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if self.team is not None else 1
            self.cache = TrainCache(train_samples, preprocess.resize_size[0],
                                    budget_bytes=ram_budget(processes=local_processes), workers=max(self.workers(), 2))
            self.device_augment = device_augmentation(preprocess, self.recipe.augmentation)
        self.val_dataset = ImageDataset(val_samples, preprocess, preprocess.resize_size[0])
        return iter(())

    def train_size(self) -> int:
        return self._shard_size(len(self.train_dataset))

    def train_batches(self, batch_size, epoch):
        self.train_dataset.epoch = epoch
        drop_last = self.train_size() > batch_size
        if self.cache is not None:
            yield from self._cached_batches(batch_size, epoch, drop_last)
            return
        if self.team is None:
            loader = DataLoader(self.train_dataset, batch_size=batch_size, shuffle=True,
                                generator=self.generator, num_workers=self.workers(), drop_last=drop_last)
        else:
            loader = DataLoader(self.train_dataset, batch_size=batch_size, sampler=self._rank_share(epoch),
                                num_workers=self.workers(), drop_last=drop_last)
        for batch, labels, indices in loader:
            self._saw(indices)
            yield batch.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _rank_share(self, epoch: int) -> DistributedSampler:
        """This rank's seeded share of a shuffle of the training images that changes with the epoch and is the
        same on every rank."""
        sampler = DistributedSampler(range(len(self.train_dataset)), num_replicas=self.team.world_size,
                                     rank=self.team.rank, shuffle=True, seed=self.recipe.seed)
        sampler.set_epoch(epoch)
        return sampler

    def _cached_batches(self, batch_size: int, epoch: int, drop_last: bool) -> Iterator[Batch]:
        if self.team is None:
            order = torch.randperm(len(self.cache), generator=self.generator).tolist()
        else:
            order = list(self._rank_share(epoch))
        for images, labels, indices in self.cache.batches(order, batch_size, drop_last=drop_last):
            self._saw(indices)
            seeds = [image_seed(self.recipe.seed, epoch, index) for index in indices.tolist()]
            batch = augment_batch(images, seeds, self.device_augment, self.model.preprocess, self.device)
            yield batch, labels.to(self.device, non_blocking=True)

    def val_batches(self):
        loader = DataLoader(self.val_dataset, batch_size=self.recipe.eval_batch_size, num_workers=self.workers(),
                            generator=torch.Generator())
        for batch, labels in loader:
            yield batch.to(self.device), labels.to(self.device)

    def forward(self, inputs):
        return self._through(self.network)(inputs.contiguous(memory_format=torch.channels_last))

    def trained_module(self):
        return self.network

    def train_mode(self):
        if self.head_only:  # as Fast mode: the network as it is, its BatchNorm statistics kept
            self.network.eval()
            self.network.fc.train()
            return
        self.network.train()
        for module in self.frozen_modules:
            module.eval()  # frozen layers keep their BatchNorm statistics

    def set_head_only(self, head_only):
        self.head_only = head_only
        head = {id(p) for p in self.network.fc.parameters()}
        for parameter in self.trainable:
            parameter.requires_grad_(not head_only or id(parameter) in head)

    def parameter_groups(self, weight_decay):
        """One pair of groups per stage (stem, layer1..4, head), the rates falling geometrically from the head's
        to `early_lr_factor` of it at the stem; parameters outside those stages train at the head's rate."""
        factor = self.recipe.early_lr_factor or 1.0
        if factor == 1.0:
            return super().parameter_groups(weight_decay)
        stages = [[self.network.conv1, self.network.bn1], *([getattr(self.network, f"layer{i}")] for i in range(1, 5))]
        trainable = {id(p) for p in self.trainable}
        placed: set[int] = set()
        groups = []
        for index, modules in enumerate(stages):
            parameters = [p for module in modules for p in module.parameters() if id(p) in trainable]
            placed |= {id(p) for p in parameters}
            groups += _decay_groups(parameters, weight_decay, factor ** (1 - index / len(stages)))
        rest = [p for p in self.trainable if id(p) not in placed]
        return [group for group in groups + _decay_groups(rest, weight_decay, 1.0) if group["params"]]


MODE_TYPES: dict[str, type[TrainingMode]] = {"fast": FastMode, "full": FullMode}


def _decay_groups(parameters: list[nn.Parameter], weight_decay: float, lr_scale: float) -> list[dict]:
    """Two optimizer groups at `lr_scale` of the rate: weights with decay, scales/shifts/biases (1-D) without."""
    decayed = [p for p in parameters if p.ndim > 1]
    plain = [p for p in parameters if p.ndim <= 1]
    return [group for group in ({"params": decayed, "weight_decay": weight_decay, "lr_scale": lr_scale},
                                {"params": plain, "weight_decay": 0.0, "lr_scale": lr_scale}) if group["params"]]


def train_transform(preprocess, augmentation: str) -> Callable:
    """Augmentation in the model's own geometry and normalisation (torchvision's transforms)."""
    from torchvision import transforms as T

    if augmentation == "none":
        return preprocess
    crop = preprocess.crop_size[0]
    steps: list = [T.RandomResizedCrop(crop, interpolation=preprocess.interpolation, antialias=True),
                   T.RandomHorizontalFlip()]
    if augmentation == "trivialaugment":
        steps.append(T.TrivialAugmentWide(interpolation=preprocess.interpolation))
    steps += [T.PILToTensor(), T.ConvertImageDtype(torch.float), T.Normalize(preprocess.mean, preprocess.std)]
    return T.Compose(steps)


class _SeededImages(torch.utils.data.Dataset):
    """Decodes and augments each image under a seed made of (run seed, epoch, index), leaving the caller's
    random state alone.

    torchvision's random transforms draw from torch's global generator; seeding it per image inside
    `fork_rng` makes augmentation reproducible (also after a resume, and with any number of loader
    workers) without seeding anything the rest of the program uses.
    """

    def __init__(self, dataset: ImageDataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_seed(self.seed, self.epoch, index))
            return (*self.dataset[index], index)  # the index lets a rank record which images it trained on
