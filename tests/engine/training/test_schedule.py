"""The learning rate over a run: warm-up, cosine decay, and one cycle per phase when the head trains alone."""

import math

import pytest

from cardinal.engine.training.recipe import Recipe
from cardinal.engine.training.schedule import head_only, lr_factor, warmup_cosine


def test_warm_up_rises_linearly_to_the_peak_then_cosine_decays_to_zero():
    assert warmup_cosine(0.0, 10, 2) == pytest.approx(0.0005)
    assert warmup_cosine(1.0, 10, 2) == pytest.approx(0.5005)
    assert warmup_cosine(2.0, 10, 2) == pytest.approx(1.0)  # the peak where warm-up ends
    assert warmup_cosine(6.0, 10, 2) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(10.0, 10, 2) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(12.0, 10, 2) == pytest.approx(0.0, abs=1e-12)  # never below zero past the end
    factors = [warmup_cosine(step / 10, 10, 2) for step in range(20, 101)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))  # decays without a bump


def test_a_one_epoch_run_has_no_warm_up_and_a_warm_up_never_fills_the_run():
    assert warmup_cosine(0.0, 1, 3) == pytest.approx(1.0)
    assert warmup_cosine(0.5, 1, 3) == pytest.approx(0.5)
    # Three epochs of warm-up in a three-epoch run: warm-up stops one epoch short, so the rate still decays.
    assert warmup_cosine(2.0, 3, 3) == pytest.approx(1.0) and warmup_cosine(2.5, 3, 3) == pytest.approx(0.5)


def test_full_mode_with_a_frozen_phase_runs_one_cycle_per_phase():
    recipe = Recipe(mode="full", epochs=6, freeze_epochs=2, warmup_epochs=1, lr=1e-3)
    assert [head_only(epoch, recipe) for epoch in range(6)] == [True, True, False, False, False, False]
    assert lr_factor(0.0, recipe) == pytest.approx(1.0)  # the head's phase starts at its peak (no warm-up)
    assert lr_factor(1.0, recipe) == pytest.approx(0.5)
    assert lr_factor(2.0, recipe) == pytest.approx(0.001)  # the whole network warms up again, from near zero
    assert lr_factor(3.0, recipe) == pytest.approx(1.0)
    assert lr_factor(6.0, recipe) == pytest.approx(0.0, abs=1e-12)
    fast = Recipe(mode="fast", epochs=6, freeze_epochs=2, warmup_epochs=1, lr=1e-3)
    assert not any(head_only(epoch, fast) for epoch in range(6))  # Fast trains only a head anyway
    assert lr_factor(3.5, fast) == pytest.approx(warmup_cosine(3.5, 6, 1)) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 2.5 / 5)))
