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

# The rates scanned for each optimizer: Adam-style steps are normalised, so they blow up three orders of magnitude
# below SGD's.
RANGES = {"adamw": (1e-5, 1.0), "sgd": (1e-4, 10.0)}
START_LR, END_LR = min(low for low, _ in RANGES.values()), max(high for _, high in RANGES.values())
STEPS = 36  # seven per decade: enough to see the valley
MIN_STEPS = 15  # three per decade: the coarsest curve whose valley still means something
SHARE_OF_RUN = 0.1  # the test costs at most about this share of the run's own steps (but MIN_STEPS at least)
DIVERGED = 4.0  # the test stops once the smoothed loss is this many times the lowest it reached
SKIP_START = 2  # the first steps show the untrained network's loss, not the rate's effect
_FINDER_EPOCH = 1 << 20  # the augmentation seeds of the test's batches: none of the run's epochs


def find_learning_rate(mode: TrainingMode, optimizer: torch.optim.Optimizer, criterion: nn.Module, *,
                       batch_size: int, steps: int = STEPS, scan: tuple[float, float] = RANGES["adamw"],
                       cancel: CancelToken | None = None, agree: Callable[[torch.Tensor], float] | None = None,
                       ) -> Generator[LRFinderStep, None, LRFinding]:
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
            lr = scan[0] * (scan[1] / scan[0]) ** (step / max(steps - 1, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with mode.autocast():
                loss = criterion(mode.forward(inputs).float(), labels)
            value = float(loss.detach()) if agree is None else agree(loss)
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
        mode.seen_indices = []  # under torchrun: the test's batches are no epoch's share
    smoothed = centred_smoothing(losses, half_width=1 if len(losses) < 24 else 2)
    return LRFinding(tuple(lrs), tuple(losses), tuple(smoothed), suggest_rate(lrs, losses))


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


def suggest_rate(lrs: list[float], losses: list[float]) -> float:
    """The rate to train at, from the test's curve.

    Where the loss blows up (half again above where it started) is the curve's one unmistakable point, also on a
    short, noisy test; a tenth of that rate is the classic safe choice (Smith 2015). When the loss clearly fell
    before (by a tenth of its starting level or more), the middle of that fall on a log scale is fastai's "valley"
    idea, kept within a thirtieth and a third of the blow-up rate so that a noisy minimum cannot drag it far off.
    """
    finite = [loss for loss in losses if math.isfinite(loss)]
    if len(finite) < 3:
        return lrs[0] if lrs else RANGES["adamw"][0]
    start = max(finite[: SKIP_START + 1])
    blown = [i for i, loss in enumerate(losses) if i > SKIP_START and not (math.isfinite(loss) and loss <= 1.5 * start)]
    end = blown[0] if blown else len(losses)
    blow_up = lrs[end] if end < len(lrs) else lrs[-1]
    lrs, losses = lrs[:end], losses[:end]
    smoothed = centred_smoothing(losses, half_width=1 if len(losses) < 24 else 2)
    lowest = min(range(len(smoothed)), key=lambda i: smoothed[i])
    top_level = max(smoothed[: lowest + 1])
    drop = top_level - smoothed[lowest]
    if lowest == 0 or drop < 0.1 * top_level:
        return blow_up / 10
    # The fall starts at the last step that is still within a tenth of the whole drop of the starting level.
    top = max(i for i in range(lowest + 1) if smoothed[i] >= smoothed[lowest] + 0.9 * drop)
    middle = math.exp((math.log(lrs[top]) + math.log(lrs[lowest])) / 2)
    return min(max(middle, blow_up / 30), blow_up / 3)
