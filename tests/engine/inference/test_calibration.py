"""Temperature scaling and the expected calibration error, on synthetic logits whose truth is known."""

import warnings

import numpy as np
import pytest

from cardinal.engine.inference.calibration import (
    Calibration,
    ConfidenceTally,
    Reliability,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    reliability,
    softmax,
    uncalibrated,
)
from cardinal.engine.models.output_rules import TEMPERATURE_RANGE


def sampled(true_temperature: float, images: int = 20_000, classes: int = 10, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / true_temperature): that temperature is the right one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (images, classes))
    probabilities = softmax(logits, true_temperature)
    labels = (probabilities.cumsum(axis=1) > rng.random((images, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fitting_recovers_a_known_temperature(true_temperature):
    logits, labels = sampled(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_scaling_halves_the_calibration_error_of_an_over_confident_model():
    logits, labels = sampled(2.5, seed=1)
    fitted = calibrate(logits[:10_000], labels[:10_000], fitted_on="the first half")
    held_out_before = expected_calibration_error(softmax(logits[10_000:]), labels[10_000:])
    held_out_after = expected_calibration_error(softmax(logits[10_000:], fitted.temperature), labels[10_000:])
    assert held_out_after <= held_out_before / 2
    assert fitted.after.ece < fitted.before.ece
    assert (softmax(logits, fitted.temperature).argmax(1) == softmax(logits).argmax(1)).all()  # classes never change


def test_a_perfect_validation_set_makes_the_model_no_surer_than_it_shows():
    logits = np.array([[9.0, 0.0], [0.0, 9.0]] * 20)
    labels = np.array([0, 1] * 20)
    temperature = fit_temperature(logits, labels)
    # 40 of 40 right: sure of 41/42 of images (Laplace's rule of succession), not of all of them
    assert softmax(logits, temperature).max(axis=1).mean() == pytest.approx(41 / 42, abs=1e-6)
    assert TEMPERATURE_RANGE[0] < temperature < TEMPERATURE_RANGE[1]
    assert fit_temperature(logits, 1 - labels) == TEMPERATURE_RANGE[1]  # all wrong: as unsure as allowed


def test_ece_by_hand():
    # Two images at 0.9 confidence (one right), two at 0.6 (both right): |0.5-0.9|*2/4 + |1.0-0.6|*2/4 = 0.4.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    diagram = reliability(probabilities, labels)
    assert diagram.ece == pytest.approx(0.4)
    assert len(diagram.bins) == 15 and sum(b.images for b in diagram.bins) == 4
    assert Reliability.from_list(diagram.to_list()).ece == pytest.approx(0.4)


def test_an_image_without_finite_probabilities_is_left_out_of_the_diagram():
    # A network whose logits overflowed gives NaN probabilities: the diagram and its ECE are those of the rest
    # (a NaN used to join the first bin and make the whole ECE NaN).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagram = reliability(probabilities, np.array([0, 1, 0, 1, 0]))
    assert diagram.ece == pytest.approx(0.4) and diagram.images == 4


def test_calibration_record_round_trips_and_the_raw_probabilities_come_back():
    logits, labels = sampled(2.0, images=500)
    record = calibrate(logits, labels, fitted_on="the 500 validation images")
    again = Calibration.from_dict(record.to_dict())
    assert again.temperature == record.temperature and again.after.ece == pytest.approx(record.after.ece, abs=1e-5)
    calibrated = softmax(logits, record.temperature)
    assert np.allclose(uncalibrated(calibrated, record.temperature), softmax(logits), atol=1e-9)
    tally = ConfidenceTally(record.temperature)
    for row, label in zip(calibrated, labels, strict=True):
        tally.add(row, label)
    assert tally.reliability().ece == pytest.approx(record.after.ece, abs=1e-6)
    assert tally.reliability_before().ece == pytest.approx(record.before.ece, abs=1e-6)
    assert ConfidenceTally(1.0).reliability_before() is None
