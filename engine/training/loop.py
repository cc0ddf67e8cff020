"""Fine-tuning as a generator of events: one epoch loop, with Fast or Full mode as a small strategy.

The recipe adapts to where training starts (`Recipe.adapted`), a range test picks the learning rate when none
is given, and the model kept as "best" is the epoch with the lowest validation loss (smoother than accuracy on a
small validation split, so noise is less often mistaken for progress).

The GUI and `cardinal train` both drive `train()`; stop it with its `CancelToken` (checked between
batches: the run ends after the batch in hand, keeping best and last) or by closing the generator. The run
folder is locked for the run; models and checkpoint are written together, atomically, and `resume=True`
continues where the checkpoint stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Generator
from pathlib import Path

import torch
from torch import nn

from cardinal.engine.data.datasets import DatasetScan, train_val_split
from cardinal.engine.errors import Cancelled, TrainingError
from cardinal.engine.inference.device import resolve_precision, select_device
from cardinal.engine.models.model_file import read_model_sidecar
from cardinal.engine.models.registry import LoadedModel
from cardinal.engine.models.weights import read_state_dict
from cardinal.engine.progress import CancelToken
from cardinal.engine.runs.folder import claim_run_folder
from cardinal.engine.runs.layout import RunPaths
from cardinal.engine.runs.lr_find import LRFinding, write_lr_finding
from cardinal.engine.runs.state import RunState, restore_optimizer, save_run_state
from cardinal.engine.training.calibrate import calibrate_best
from cardinal.engine.training.distributed import ShardRecord, Team
from cardinal.engine.training.duplicates import check_duplicates
from cardinal.engine.training.events import (
    BatchEnd,
    EpochEnd,
    Event,
    LRFinderStep,
    LRFound,
    Notice,
    Preparing,
    RecipeChosen,
    StopReason,
    TrainingResult,
)
from cardinal.engine.training.lr_finder import RANGES, find_learning_rate, steps_for
from cardinal.engine.training.modes import MODE_TYPES, TrainingMode
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.run_outputs import (
    record_history,
    resumed_state,
    write_epoch_model,
    write_run_report,
)
from cardinal.engine.training.schedule import head_only, lr_factor
from cardinal.engine.training.starting_point import new_model


def train(
    scan: DatasetScan,
    base: LoadedModel,
    recipe: Recipe,
    out_dir: str | Path,
    *,
    device: str | None = None,
    cancel: CancelToken | None = None,
    resume: bool = False,
    team: Team | None = None,
) -> Generator[Event, None, TrainingResult]:
    """Fine-tune `base` on the scanned folder, yielding events; returns the result with the best model.

    Raises `Cancelled` (nothing saved) when cancelled before the first epoch ends, and `TrainingError`
    when the loss diverges in the first epoch; otherwise best and last are on disk when it returns.
    With a `team` (under torchrun) every rank trains on its share and rank 0 alone writes the run folder.
    The recipe's "auto" choices are made for `base` (random weights or a trained model); without a learning
    rate a range test chooses one first (a resumed run keeps the one its checkpoint recorded).
    """
    scan.raise_for_problems()
    said = recipe.choices_said(random_weights=base.random_weights)
    recipe = recipe.adapted(random_weights=base.random_weights)
    device_ = select_device(device) if team is None else team.device
    dtype = resolve_precision(recipe.precision, device_)
    train_samples, val_samples = train_val_split(scan, recipe.val_fraction, recipe.seed)
    if not val_samples:
        raise TrainingError("the validation set is empty; add images or raise the validation share")
    claim = (claim_run_folder(out_dir, resume=resume) if team is None else
             team.main_only(lambda: claim_run_folder(out_dir, resume=resume)))
    with claim as folder:
        folder = folder or Path(out_dir).expanduser().absolute()
        yield Preparing(f"building the model for {len(scan.class_names)} classes")
        model = new_model(base, scan.class_names, recipe.seed, recipe.image_size)
        generator = torch.Generator().manual_seed(recipe.seed)
        mode = MODE_TYPES[recipe.mode](model, recipe, device_, dtype, generator, team)
        run = _Run(scan, recipe, model, mode, folder, cancel, base.source)
        state = resumed_state(folder, model, mode.trained_module(), recipe, base.source, team) if resume else None
        if state is not None and recipe.lr is None:  # the rate the run chose (or was given), not a new range test
            run.use_rate(state.recipe.get("lr"), bool(state.recipe.get("lr_found")))
        yield RecipeChosen(recipe, said)
        yield Preparing("getting the images ready")
        yield from mode.prepare(train_samples, val_samples, cancel)
        writes = team is None or team.is_main  # in a team, rank 0 alone writes history, scan and report
        duplicates = (yield from check_duplicates(scan, train_samples, val_samples, mode, cancel, recipe.seed,
                                                  base.random_weights)) if writes else None
        run.prepare_loss(train_samples)
        finding = None
        if run.recipe.lr is None:
            finding = yield from run.find_rate()
            if writes:
                write_lr_finding(folder, finding)
            yield LRFound(finding)
        run.start(state)
        yield Preparing("training the first batch (the slowest: it also warms up)")
        stopped = yield from (record_history(run.epochs(), folder, run.history) if writes else run.epochs())
        run.finish()
        evaluation = None
        if writes and stopped is not StopReason.CANCELLED:
            run.model = yield from calibrate_best(run.model, train_samples, val_samples, RunPaths(folder).best,
                                                  device=device_, precision=recipe.precision, seed=recipe.seed,
                                                  cached=mode.cached_features(),
                                                  sections={"duplicates": duplicates.to_dict()}, cancel=cancel)
        if writes:
            evaluation = yield from write_run_report(run.model, val_samples, folder, dataset=scan,
                                                     recipe=run.recipe, device=device_, stopped=stopped,
                                                     best_epoch=run.best_epoch, cancel=cancel)
    return TrainingResult(model=run.model, best_epoch=run.best_epoch, best_val_accuracy=run.best_accuracy,
                          epochs_run=len(run.history), stopped=stopped, history=tuple(run.history), out_dir=folder,
                          val_samples=tuple(val_samples), evaluation=evaluation, recipe=run.recipe,
                          lr_finding=finding)


class _NonFinite(Exception):
    """The loss became NaN or infinite (internal: the loop turns it into a stop reason)."""


class _Run:
    """One run's progress over its epochs; `train()` is its only user, `mode` does the mode's part."""

    def __init__(self, scan: DatasetScan, recipe: Recipe, model: LoadedModel, mode: TrainingMode,
                 folder: Path, cancel: CancelToken | None, base_source: str) -> None:
        self.scan, self.recipe, self.model, self.mode, self.folder = scan, recipe, model, mode, folder
        self.team = mode.team
        # In a team the loop sees a stop only at a step every rank agreed on (see Team.agree).
        self.cancel = cancel if self.team is None else self.team.agreed_cancel(cancel)
        self.shards = None if self.team is None else ShardRecord(self.team)
        self.base_source = base_source
        self.history: list[EpochEnd] = []
        self.best_accuracy, self.best_epoch = 0.0, 0
        self.best_loss = math.inf
        self.batch_size = recipe.batch_size
        self.saved_epoch = 0
        self.best_pending: dict[str, torch.Tensor] | None = None  # best weights not yet on disk
        self.last_good: dict[str, torch.Tensor] | None = None

    def use_rate(self, lr: float | None, found: bool) -> None:
        """Train at `lr` (from a checkpoint or a range test); `found`: the range test chose it."""
        if lr is not None:
            self.recipe = dataclasses.replace(self.recipe, lr=float(lr), lr_found=found)
            self.mode.recipe = self.recipe

    def prepare_loss(self, train_samples: list) -> None:
        """The loss: cross-entropy with the recipe's label smoothing, weighted against imbalance if asked."""
        labels = torch.tensor([label for _, label in train_samples])
        weights = None
        if self.recipe.class_weighted:
            counts = torch.bincount(labels, minlength=self.model.num_classes)
            weights = (counts.sum() / (len(counts) * counts.clamp(min=1))).float().to(self.mode.device)
        self.criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=self.recipe.label_smoothing)

    def find_rate(self) -> Generator[LRFinderStep, None, LRFinding]:
        """Run the range test on this run's data and model, then train at the rate it chose."""
        agree = None
        if self.team is not None:
            team = self.team

            def agree(loss: torch.Tensor) -> float:  # every rank sees the same curve and stops at the same step
                team.agree(loss, self.cancel)
                return team.sum(float(loss.detach()))[0] / team.world_size

        run_steps = self.recipe.epochs * max(1, self.mode.train_size() // self.batch_size)
        finding = yield from find_learning_rate(self.mode, self._optimizer(1.0), self.criterion,
                                                batch_size=self.batch_size, steps=steps_for(run_steps),
                                                scan=RANGES[self.recipe.optimizer], cancel=self.cancel, agree=agree)
        self.use_rate(finding.suggestion, True)
        return finding

    def start(self, state: RunState | None) -> None:
        """Build the optimizer, and continue from `state` when resuming."""
        self.last_save = time.monotonic()  # the save interval counts training time, not the feature pass
        self.optimizer = self._optimizer(self.recipe.chosen_lr)
        if state is None:
            return
        self.mode.load_weights(state.weights)
        restore_optimizer(state, self.folder, self.optimizer)
        self.batch_size = state.batch_size
        self.mode.generator.set_state(state.generator)
        self.history = [EpochEnd(**values) for values in state.history]
        self.best_accuracy, self.best_epoch = state.best_accuracy, state.best_epoch
        if self.history and self.best_epoch:
            self.best_loss = self.history[self.best_epoch - 1].val_loss
        self.saved_epoch = state.epoch
        self.last_good = self.mode.weights()

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        groups = self.mode.parameter_groups(self.recipe.weight_decay)
        if self.recipe.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=self.recipe.momentum, nesterov=True)
        return torch.optim.AdamW(groups, lr=lr)

    # --- the loop ----------------------------------------------------------------------------------------
    def epochs(self) -> Generator[Event, None, StopReason]:
        stale = self._epochs_since_best()
        for epoch in range(len(self.history), self.recipe.epochs):
            try:
                epoch_end = yield from self._epoch(epoch)
            except Cancelled:
                return self._stop(StopReason.CANCELLED)
            except _NonFinite:
                yield Notice("The loss became NaN or infinite: training stopped and the last good model is kept. "
                             "Try a lower learning rate.")
                return self._stop(StopReason.NON_FINITE)
            yield epoch_end
            stale = 0 if epoch_end.improved else stale + 1
            patience = self.recipe.stop_patience
            if patience is not None and stale >= patience and epoch + 1 < self.recipe.epochs:
                yield Notice(f"No better validation loss for {stale} epochs: stopping early.")
                return StopReason.EARLY_STOPPING
        return StopReason.COMPLETED

    def _epochs_since_best(self) -> int:
        return len(self.history) - self.best_epoch if self.history else 0

    def _stop(self, reason: StopReason) -> StopReason:
        """End the run at the last finished epoch; with none finished there is nothing to keep."""
        if not self.history:
            if reason is StopReason.CANCELLED:
                raise Cancelled("training was cancelled before its first epoch finished; nothing was saved")
            raise TrainingError("the loss became NaN or infinite in the first epoch, so no model was saved; "
                                "try a lower learning rate (--lr)")
        if self.last_good is not None:
            self.mode.load_weights(self.last_good)
        return reason

    def _epoch(self, epoch: int) -> Generator[Event, None, EpochEnd]:
        while True:
            try:
                return (yield from self._epoch_once(epoch))
            except torch.cuda.OutOfMemoryError:
                if self.team is not None:  # every rank must step with the same batch: no halving alone
                    raise TrainingError(f"process {self.team.rank} ran out of GPU memory; lower --batch-size "
                                        "(it is per process)") from None
                if self.batch_size == 1:
                    raise TrainingError("the GPU ran out of memory even with a batch of one image") from None
                self.batch_size //= 2
                self.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                yield Notice(f"GPU out of memory: continuing with batch size {self.batch_size}.")

    def _epoch_once(self, epoch: int) -> Generator[BatchEnd, None, EpochEnd]:
        started = time.perf_counter()
        self.mode.set_head_only(head_only(epoch, self.recipe))
        self.mode.train_mode()
        batches = math.ceil(self.mode.train_size() / self.batch_size)
        total_loss = correct = seen = 0.0
        for index, (inputs, labels) in enumerate(self.mode.train_batches(self.batch_size, epoch)):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled("training")
            factor = lr_factor(epoch + index / max(batches, 1), self.recipe)
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.chosen_lr * factor * group.get("lr_scale", 1.0)
            with self.mode.autocast():
                logits = self.mode.forward(inputs)
                loss = self.criterion(logits.float(), labels)
            finite = torch.isfinite(loss) if self.team is None else self.team.agree(loss, self.cancel)
            if not finite:
                raise _NonFinite()
            if self.cancel is not None:  # a cancelled epoch is discarded: skip the backward pass (2/3 of a step)
                self.cancel.raise_if_cancelled("training")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            batch_loss = float(loss.detach())
            total_loss += batch_loss * len(labels)
            correct += float((logits.detach().argmax(1) == labels).sum())
            seen += len(labels)
            elapsed = time.perf_counter() - started
            per_batch = elapsed / (index + 1)
            left = per_batch * (batches - index - 1 + batches * (self.recipe.epochs - epoch - 1))
            ranks = 1 if self.team is None else self.team.world_size  # every rank runs batches alike
            yield BatchEnd(epoch + 1, index + 1, batches, batch_loss, self.recipe.chosen_lr * factor,
                           images_per_second=ranks * seen / max(elapsed, 1e-9), eta_seconds=left)
        train_seconds = time.perf_counter() - started
        if self.team is not None:
            total_loss, correct, seen = self.team.sum(total_loss, correct, seen)
            self.shards.add(epoch + 1, self.mode.seen_indices)
            self.mode.seen_indices = []
        val_loss, val_accuracy, val_images = self._validate()
        improved = not self.history or val_loss < self.best_loss
        epoch_end = EpochEnd(
            epoch=epoch + 1,
            epochs=self.recipe.epochs,
            train_loss=total_loss / max(seen, 1),
            train_accuracy=correct / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            images_per_second=seen / max(train_seconds, 1e-9),
            eta_seconds=(self.recipe.epochs - epoch - 1) * (time.perf_counter() - started),
            improved=improved,
            val_images=int(val_images),
        )
        self._epoch_finished(epoch_end)
        return epoch_end

    @torch.no_grad()
    def _validate(self) -> tuple[float, float, float]:
        self.mode.eval_mode()
        total_loss = correct = seen = 0.0
        for inputs, labels in self.mode.val_batches():
            if self.cancel is not None:
                self.cancel.raise_if_cancelled("training")
            with self.mode.autocast():
                logits = self.mode.forward(inputs).float()
            total_loss += float(self.criterion(logits, labels)) * len(labels)
            correct += float((logits.argmax(1) == labels).sum())
            seen += len(labels)
        if self.team is not None:
            total_loss, correct, seen = self.team.sum(total_loss, correct, seen)
        return total_loss / max(seen, 1), correct / max(seen, 1), seen

    # --- saving ----------------------------------------------------------------------------------------------
    def _epoch_finished(self, epoch_end: EpochEnd) -> None:
        self.history.append(epoch_end)
        self.last_good = self.mode.weights()
        if epoch_end.improved:
            self.best_accuracy, self.best_epoch = epoch_end.val_accuracy, epoch_end.epoch
            self.best_loss = epoch_end.val_loss
            self.best_pending = self.last_good
        if time.monotonic() - self.last_save >= self.mode.save_interval_s:
            self._save()

    def _save(self) -> None:
        """Write last (and best, if it changed) and then the checkpoint: models are never older than it."""
        last = self.history[-1]
        if self.team is not None and not self.team.is_main:  # rank 0 writes for everyone
            self.best_pending, self.saved_epoch, self.last_save = None, last.epoch, time.monotonic()
            return
        if self.shards is not None:
            self.shards.write(self.folder)
        self._write_model("last", last)
        if self.best_pending is not None:
            earlier_best = self.best_pending is not self.last_good  # else the weights in place are the best
            if earlier_best:
                self.mode.load_weights(self.best_pending)
            self._write_model("best", self.history[self.best_epoch - 1])
            if earlier_best:
                self.mode.load_weights(self.last_good)
            self.best_pending = None
        save_run_state(self.folder, RunState(
            class_names=self.model.class_names,
            architecture=self.model.name,
            recipe=self.recipe.to_dict(),
            base=self.base_source,
            epoch=last.epoch,
            weights=self.last_good,
            optimizer=self.optimizer.state_dict(),
            batch_size=self.batch_size,
            generator=self.mode.generator.get_state(),
            history=tuple(dataclasses.asdict(h) for h in self.history),
            best_accuracy=self.best_accuracy,
            best_epoch=self.best_epoch,
        ))
        self.saved_epoch = last.epoch
        self.last_save = time.monotonic()

    def _write_model(self, which: str, epoch_end: EpochEnd) -> None:
        write_epoch_model(self.model, RunPaths(self.folder).model(which), epoch_end, self.recipe, self.scan.root)

    def finish(self) -> None:
        """Save what is not on disk yet, then leave the best weights (what `best.safetensors` holds) in the model."""
        if self.saved_epoch != len(self.history) or self.best_pending is not None:
            self._save()
        best = RunPaths(self.folder).best
        network = self.mode.network
        if self.team is None:
            network.load_state_dict(read_state_dict(best))
        else:  # the other ranks may not see rank 0's disk (several machines): it sends them the weights
            network.load_state_dict(self.team.from_main(lambda: read_state_dict(best)))
        network.to("cpu").to(memory_format=torch.contiguous_format).eval()
        description = (read_model_sidecar(best) or {}) if self.team is None or self.team.is_main else {}
        self.model = dataclasses.replace(self.model, network=network, description=description)
