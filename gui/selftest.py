"""`cardinal --self-test`: prove an installation (or a frozen build) works, end to end, without a display."""

from __future__ import annotations

import os
import sys
import time
import traceback


def run_self_test() -> int:
    """Start Qt offscreen, build the model, classify and explain the sample image; print one line."""
    started = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        report = _self_test()
    except Exception as error:  # noqa: BLE001 - the report must say what broke, whatever it was
        traceback.print_exc(file=sys.stderr)
        print(f"cardinal self-test FAILED: {type(error).__name__}: {error}", flush=True)
        return 1
    print(f"cardinal self-test ok in {time.perf_counter() - started:.1f} s: {report}", flush=True)
    return 0


def _self_test() -> str:
    import numpy as np
    from PySide6 import __version__ as pyside_version
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    import torch
    import torchvision

    from cardinal.engine.data.images import load_image
    from cardinal.engine.errors import CardinalError
    from cardinal.engine.inference.cam import overlay
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.models.registry import DEFAULT_MODEL, load_pretrained, random_model
    from cardinal.gui.assets import asset
    from cardinal.gui.qimage import array_to_qimage

    # torchvision's compiled operators: a build that forgot them fails here, not at a user's first click.
    kept = torchvision.ops.nms(torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]]),
                               torch.tensor([0.9, 0.8]), 0.5)
    if kept.tolist() != [0]:
        raise RuntimeError(f"torchvision.ops.nms returned {kept.tolist()}")
    try:
        model, weights = load_pretrained(DEFAULT_MODEL, allow_download=False), "ImageNet weights"
    except CardinalError:
        model, weights = random_model(DEFAULT_MODEL, seed=0), "random weights: no ImageNet weights on disk"
    classifier = Classifier(model)
    image = load_image(asset("sample.jpg"))
    analysis = classifier.analyze([image], k=1)[0]
    top = analysis.predictions[0]
    heatmap = analysis.heatmap(top.index)
    blended = overlay(np.asarray(image), heatmap, seen=analysis.seen_box())
    rendered = array_to_qimage(blended)
    if rendered.isNull() or heatmap.shape != (image.height, image.width):
        raise RuntimeError("the heat-map overlay could not be rendered")
    compiled = _compiled_backend(image, classifier.dtype)
    del app
    return (f"Qt {pyside_version} ({os.environ['QT_QPA_PLATFORM']}), torch {torch.__version__}, "
            f"{model.name} ({weights}) on {classifier.description}; sample.jpg -> '{top.label}' "
            f"{top.probability:.1%}; Grad-CAM {heatmap.shape[1]}x{heatmap.shape[0]}; torchvision ops ok; {compiled}")


def _compiled_backend(image, dtype) -> str:
    """Convert a small random ResNeXt with the compiled backend this machine would use, through the product's
    parity gate, and classify the sample with it: a build that lost the runtime's plugins (loaded by file name,
    out of sight of import analysis) fails here, and so does one whose child processes cannot start (the app
    converts in one). Converted into a temporary cache, not the user's."""
    import tempfile

    from cardinal.engine.inference.backends.classifier import CompiledClassifier
    from cardinal.engine.inference.backends.select import convert_and_adopt, dtype_name, plan_for
    from cardinal.engine.inference.backends.store import CACHE_VARIABLE
    from cardinal.engine.inference.classifier import Classifier
    from cardinal.engine.models.registry import Architecture, random_model

    small = random_model(Architecture((1, 1, 1, 1), 32, 4), ("a", "b", "c"), seed=0)
    plan = plan_for(small, "cpu", dtype_name(dtype), "auto")
    if plan is None:
        return "no compiled backend here (PyTorch runs every model)"
    earlier = os.environ.get(CACHE_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="cardinal-self-test-") as folder:
        os.environ[CACHE_VARIABLE] = folder
        try:
            compiled = convert_and_adopt(plan, small, isolated=True)  # as the app converts: in a child process
        finally:
            if earlier is None:
                os.environ.pop(CACHE_VARIABLE, None)
            else:
                os.environ[CACHE_VARIABLE] = earlier
        if not isinstance(compiled, CompiledClassifier):
            raise RuntimeError(f"the compiled backend refused a model: {compiled}")
        answer = compiled.analyze([image], k=3)[0].probabilities
    expected = Classifier(small).analyze([image], k=3)[0].probabilities
    # The parity gate compared them closely already; this only catches a build that answers something else.
    if abs(answer - expected).max() > 0.05:
        raise RuntimeError(f"{compiled.description} answered {answer.round(3).tolist()} where PyTorch answered "
                           f"{expected.round(3).tolist()}")
    return f"{compiled.description} converted, checked and agrees"
