"""The app's conversion runs the converter in a child process (it holds Python's lock for long stretches, which
froze the window): the same answers as converting in-process, failures and cancels said, no child left."""

from __future__ import annotations

import importlib.util
import multiprocessing

import numpy as np
import pytest
import torch

from cardinal.engine.errors import Cancelled
from cardinal.engine.inference.backends import runtimes, store
from cardinal.engine.inference.backends.compiled import CompiledModel, probe_pixels
from cardinal.engine.inference.backends.convert import LogitsAndFeatures, convert, key_for
from cardinal.engine.inference.backends.isolated import convert_in_child
from cardinal.engine.progress import CancelToken
from tests.engine.inference.test_backends import sharp_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="OpenVINO is not installed here (pip install openvino)")
OPENVINO = runtimes.RUNTIMES["openvino"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_VARIABLE, str(tmp_path / "compiled"))


def test_a_conversion_in_a_child_gives_what_one_in_this_process_gives(cache, tmp_path, monkeypatch):
    model = sharp_model()
    isolated = convert(model, OPENVINO, "fp32", isolated=True).outcome
    assert isinstance(isolated, CompiledModel) and isolated.parity.same_answers
    monkeypatch.setenv(store.CACHE_VARIABLE, str(tmp_path / "in-process"))
    here = convert(model, OPENVINO, "fp32").outcome
    probes = probe_pixels(here.pixels)
    assert np.abs(isolated.forward(probes)[0] - here.forward(probes)[0]).max() <= 1e-6
    assert multiprocessing.active_children() == []


def test_a_failing_child_says_why_and_nothing_is_left(tmp_path):
    graph = LogitsAndFeatures(sharp_model().network).eval()
    with pytest.raises(RuntimeError, match="KeyError: 'no_such_runtime'"):
        convert_in_child("no_such_runtime", graph, torch.zeros(2, 3, 64, 64), tmp_path)
    assert multiprocessing.active_children() == [] and list(tmp_path.iterdir()) == []


def test_cancelling_stops_the_child_before_it_writes_and_caches_nothing(cache, tmp_path):
    graph = LogitsAndFeatures(sharp_model().network).eval()
    token = CancelToken()
    token.cancel()  # asked before the child (still importing torch) could write anything
    with pytest.raises(Cancelled):
        convert_in_child("openvino", graph, torch.zeros(2, 3, 64, 64), tmp_path / "entry", token)
    assert multiprocessing.active_children() == [] and not (tmp_path / "entry").exists()
    model = sharp_model()
    with pytest.raises(Cancelled):
        convert(model, OPENVINO, "fp32", isolated=True, cancel=token)
    assert store.read_record(key_for(model, OPENVINO, "fp32")) is None
