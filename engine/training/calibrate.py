"""After a run: the best model's temperature and its "none of these" rule, fitted on images training never saw.

The validation images' logits say how sure the model should be (the temperature, `engine.inference.calibration`);
their pooled features, compared with the training images' (the feature bank the model keeps), say how similar
an image of its own classes looks (the threshold, `engine.inference.unknown`). Both go into best.safetensors,
where `classify`, the app, `evaluate` and exports read them. Fast mode has every feature cached already, so
this is instant; Full mode classifies the validation images and up to BANK_LIMIT training images once more.
A run with fewer than MIN_VAL_IMAGES validation images gets neither (the dataset scan warns of it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cardinal.engine.data.datasets import MIN_VAL_IMAGES, ImageDataset, Sample
from cardinal.engine.errors import Cancelled, CardinalError
from cardinal.engine.inference.calibration import calibrate
from cardinal.engine.inference.classifier import Classifier
from cardinal.engine.inference.network import pooled_features
from cardinal.engine.inference.unknown import bank_choice, feature_bank, fit_knn_rule
from cardinal.engine.models.model_file import read_model_sidecar
from cardinal.engine.models.registry import LoadedModel, save_model
from cardinal.engine.progress import CancelToken
from cardinal.engine.reports.report import ReportProgress
from cardinal.engine.training.events import Notice

STAGE = "calibrating"
Cached = tuple[torch.Tensor, torch.Tensor]  # pooled features (N, C) and labels (N,)


def model_outputs(classifier: Classifier, samples: Sequence[Sample], *, batch_size: int = 64,
                  cancel: CancelToken | None = None, done: int = 0,
                  total: int | None = None) -> Generator[ReportProgress, None, tuple[torch.Tensor, torch.Tensor]]:
    """The classifier's logits (N, classes) and pooled features (N, C) for samples, in their order, on the CPU in
    fp32, yielding progress (`done` of `total` counts on from an earlier call)."""
    preprocess = classifier.model.preprocess
    dataset = ImageDataset(samples, preprocess, preprocess.resize_size[0])
    total = len(dataset) if total is None else total
    logits, pooled = [], []
    for start in range(0, len(dataset), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled("calibration")
        batch = torch.stack([dataset[index][0] for index in range(start, min(start + batch_size, len(dataset)))])
        batch_logits, maps = classifier.forward_logits(batch)
        with torch.inference_mode():
            pooled.append(pooled_features(classifier.network, maps).float().cpu())
        logits.append(batch_logits.float().cpu())
        yield ReportProgress(STAGE, done + min(start + batch_size, len(dataset)), total)
    return torch.cat(logits), torch.cat(pooled)


def calibrate_best(model: LoadedModel, train_samples: Sequence[Sample], val_samples: Sequence[Sample], best: Path, *,
                   device: torch.device, precision: str, seed: int = 0, cached: tuple[Cached, Cached] | None = None,
                   sections: Mapping[str, Any] | None = None,
                   cancel: CancelToken | None = None) -> Generator[ReportProgress | Notice, None, LoadedModel]:
    """Fit the temperature and the "none of these" rule, write them (and `sections`, more of the description, such
    as the duplicates found) into `best`, the file `model` was loaded from, and return the model with them.
    `cached`: Fast mode's (training, validation) pooled features with their labels. Problems are notices: the
    model stays saved, without them."""
    if len(val_samples) < MIN_VAL_IMAGES:  # the scan's warning said so: the model keeps its network's own answers
        return (yield from _described(model, best, dict(sections or {}))) if sections else model
    chosen = bank_choice(len(train_samples) if cached is None else len(cached[0][1]), seed)
    try:
        if cached is not None:
            (train_features, _), (val_features, labels) = cached
            train_features, val_features = train_features[chosen].float().cpu(), val_features.float().cpu()
            with torch.inference_mode():
                logits = model.network.fc(val_features)
        else:
            logits, val_features, train_features = yield from _full_pass(model, train_samples, val_samples, chosen,
                                                                         device, precision, cancel)
            labels = torch.tensor([label for _, label in val_samples])
    except Cancelled:
        yield Notice("Calibration was skipped because the run was cancelled while it ran; the model gives its "
                     "network's own probabilities and flags nothing.")
        return model
    except CardinalError as error:
        yield Notice(f"The probabilities could not be calibrated: {error}")
        return model
    calibration = calibrate(logits.numpy(), labels.cpu().numpy(), fitted_on=f"the {len(labels)} validation images")
    bank = feature_bank(train_features)
    rule = fit_knn_rule(val_features, bank)
    return (yield from _described(model, best, {**(sections or {}), "calibration": calibration.to_dict(),
                                                "unknown": rule.to_dict()}, bank))


def _described(model: LoadedModel, best: Path, sections: dict[str, Any], bank: torch.Tensor | None = None
               ) -> Generator[Notice, None, LoadedModel]:
    """`model` with `sections` added to its description (and its feature bank), saved again as `best`."""
    description = {**(read_model_sidecar(best) or model.description), **sections}
    described = dataclasses.replace(model, description=description, feature_bank=bank)
    try:
        save_model(described, best, metrics=description.get("metrics"), recipe=description.get("recipe"),
                   provenance=description.get("provenance"))
    except CardinalError as error:
        yield Notice(f"The calibration could not be saved into {best.name}: {error}")
        return model
    return described


def _full_pass(model: LoadedModel, train_samples: Sequence[Sample], val_samples: Sequence[Sample],
               chosen: list[int], device: torch.device, precision: str, cancel: CancelToken | None):
    """The validation images' logits and features, and the chosen training images' features, by classifying them."""
    classifier = Classifier(model, device=device, precision=precision)
    total = len(val_samples) + len(chosen)
    try:
        logits, val_features = yield from model_outputs(classifier, val_samples, cancel=cancel, total=total)
        _, train_features = yield from model_outputs(classifier, [train_samples[index] for index in chosen],
                                                     cancel=cancel, done=len(val_samples), total=total)
    finally:  # leave the model as training handed it over: on the CPU, in the ordinary memory layout
        model.network.to("cpu").to(memory_format=torch.contiguous_format)
    return logits, val_features, train_features
