"""The learning-rate range test (Smith 2015; fastai's `lr_find`): a short mock training whose rate grows
exponentially, step by step, until the loss blows up; the rate chosen is the middle of the stretch where the loss
fell, as fastai's "valley" suggestion is. The weights, the optimizer and the sampling state are put back
afterwards, so the run then trains from its start as if the rate had been typed.

`train()` runs it when the recipe has no learning rate (`--lr auto`, the default); it yields `LRFinderStep`
events and stops at the next step when its `CancelToken` is set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator

import torch
from torch import nn

from cardinal.engine.errors import Cancelled
from cardinal.engine.progress import CancelToken
from cardinal.engine.runs.lr_find import LRFinding
from cardinal.engine.training.events import LRFinderStep
from cardinal.engine.training.modes import Batch, TrainingMode

START_LR, END_LR = 1e-5, 10.0
STEPS = 36  # six per decade: enough to see the valley
MIN_STEPS = 12  # two per decade: the coarsest curve whose valley still means something
SHARE_OF_RUN = 0.1  # the test costs at most about this share of the run's own steps (but MIN_STEPS at least)
DIVERGED = 4.0  # the test stops once the smoothed loss is this many times the lowest it reached
SKIP_START = 2  # the first steps show the untrained network's loss, not the rate's effect
_FINDER_EPOCH = 1 << 20  # the augmentation seeds of the test's batches: none of the run's epochs


def find_learning_rate(mode: TrainingMode, optimizer: torch.optim.Optimizer, criterion: nn.Module, *,
                       batch_size: int, steps: int = STEPS, cancel: CancelToken | None = None,
                       agree: Callable[[float], float] | None = None) -> Generator[LRFinderStep, None, LRFinding]:
    """Train `mode` for up to `steps` batches at exponentially growing rates (each parameter group at its own
    share, `lr_scale`, of the rate) and return the curve with the rate chosen; everything it changed is restored.

    `optimizer` is a fresh one for the test (its state is thrown away); `agree` averages a loss over the ranks of
    a team, so that every rank stops at the same step.
    """
    weights, sampling = mode.weights(), mode.generator.get_state()
    lrs: list[float] = []
    losses: list[float] = []
    best = math.inf
    smooth = 0.0
    try:
        mode.train_mode()
        for step, (inputs, labels) in enumerate(_batches(mode, batch_size)):
            if step >= steps:
                break
            if cancel is not None:
                cancel.raise_if_cancelled("the learning-rate range test")
            lr = START_LR * (END_LR / START_LR) ** (step / max(steps - 1, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with mode.autocast():
                loss = criterion(mode.forward(inputs).float(), labels)
            value = float(loss.detach())
            if agree is not None:
                value = agree(value)
            lrs.append(lr)
            losses.append(value)
            yield LRFinderStep(step + 1, steps, lr, value)
            if not math.isfinite(value):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            smooth = value if step == 0 else 0.7 * smooth + 0.3 * value
            best = min(best, smooth)
            if step > SKIP_START and smooth > DIVERGED * best:
                break
    except Cancelled:
        raise Cancelled("training was cancelled during the learning-rate range test; nothing was saved") from None
    finally:
        optimizer.zero_grad(set_to_none=True)
        mode.load_weights(weights)
        mode.generator.set_state(sampling)
    smoothed = centred_smoothing(losses)
    return LRFinding(tuple(lrs), tuple(losses), tuple(smoothed), suggest_rate(lrs, smoothed))


def steps_for(run_steps: int) -> int:
    """How many steps the test takes for a run of `run_steps` optimisation steps: a tenth of the run, within
    [MIN_STEPS, STEPS], so a short run does not spend most of its time finding its rate."""
    return max(MIN_STEPS, min(STEPS, math.ceil(SHARE_OF_RUN * run_steps)))


def _batches(mode: TrainingMode, batch_size: int) -> Iterator[Batch]:
    """The training batches over and over (a small folder has fewer batches than the test has steps)."""
    while True:
        empty = True
        for batch in mode.train_batches(batch_size, _FINDER_EPOCH):
            empty = False
            yield batch
        if empty:
            return


def centred_smoothing(values: list[float], half_width: int = 2) -> list[float]:
    """Each loss averaged with its neighbours (non-finite ones left out): unlike a running average, the curve is
    not shifted towards higher rates."""
    smoothed = []
    for index in range(len(values)):
        window = [v for v in values[max(0, index - half_width): index + half_width + 1] if math.isfinite(v)]
        smoothed.append(sum(window) / len(window) if window else math.inf)
    return smoothed


def suggest_rate(lrs: list[float], smoothed: list[float]) -> float:
    """The middle, on a log scale, of the stretch where the smoothed loss fell: from where it left its starting
    level to its lowest point. A rate at the valley's floor is already at the edge of divergence; one at its top
    barely trains."""
    if len(lrs) < 2:
        return lrs[0] if lrs else START_LR
    usable = [i for i in range(len(lrs)) if math.isfinite(smoothed[i])]
    lowest = min(usable, key=lambda i: smoothed[i])
    start_level = max(smoothed[i] for i in usable if i <= max(lowest, SKIP_START))
    drop = start_level - smoothed[lowest]
    if drop <= 0 or lowest == 0:
        return lrs[lowest] / 10
    # The descent starts at the last step that is still within a tenth of the whole drop of the starting level.
    top = max(i for i in usable if i <= lowest and smoothed[i] >= smoothed[lowest] + 0.9 * drop)
    middle = math.exp((math.log(lrs[top]) + math.log(lrs[lowest])) / 2)
    return min(middle, lrs[lowest] / 3)
