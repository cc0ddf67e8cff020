"""'None of these': the threshold passes 95% of the images it was set on, and unfamiliar features fall below it."""

import numpy as np
import pytest
import torch

from cardinal.engine.inference.unknown import (
    bank_choice,
    feature_bank,
    fit_knn_rule,
    flag_unknown,
    knn_scores,
    logit_scores,
    threshold_for,
)
from cardinal.engine.models.output_rules import OutputRules, UnknownRule, imagenet_rule, rules_from_description


@pytest.mark.parametrize("images", [20, 37, 100, 1000])
def test_threshold_passes_95_percent_of_its_own_images(images):
    scores = np.random.default_rng(images).normal(size=images)
    threshold = threshold_for(scores)
    passed = np.mean(scores >= threshold)
    assert 0.95 <= passed < 0.95 + 1 / images + 1e-9  # as close to 95% as whole images allow


def clusters(count: int, seed: int, centre_seed: int = 0) -> torch.Tensor:
    """Non-negative features around a few fixed directions (like pooled ReLU activations of one dataset)."""
    centres = torch.rand(3, 64, generator=torch.Generator().manual_seed(centre_seed))
    generator = torch.Generator().manual_seed(seed)
    return (centres[torch.arange(count) % 3] + 0.05 * torch.randn(count, 64, generator=generator)).clamp(min=0)


def test_knn_rule_passes_its_validation_images_and_flags_other_features():
    bank = feature_bank(clusters(300, seed=1))
    rule = fit_knn_rule(clusters(60, seed=2), bank)
    assert rule.score == "knn" and rule.images == 60 and rule.pass_rate >= 0.95
    rules = OutputRules(unknown=rule)
    logits = torch.zeros(40, 3)
    _, familiar = flag_unknown(logits, clusters(40, seed=3), rules, bank.float())
    _, strange = flag_unknown(logits, clusters(40, seed=4, centre_seed=9), rules, bank.float())
    assert familiar.mean() <= 0.2 and strange.all()
    # Scores are computed against the bank as stored (fp16), exactly as the classifier later does.
    assert knn_scores(clusters(5, seed=2), bank).shape == (5,)


def test_bank_keeps_a_seeded_share_and_unit_length_rows():
    assert bank_choice(10) == list(range(10))
    chosen = bank_choice(10_000, seed=3, limit=100)
    assert len(chosen) == 100 and chosen == sorted(chosen) and chosen == bank_choice(10_000, seed=3, limit=100)
    bank = feature_bank(clusters(10, seed=1))
    assert bank.dtype == torch.float16 and torch.allclose(bank.float().norm(dim=1), torch.ones(10), atol=1e-3)


def test_logit_scores_and_the_imagenet_rule():
    logits = np.array([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    energy = logit_scores(logits, "energy")
    assert energy[0] > energy[1] and energy[0] == pytest.approx(np.log(np.exp(10) + 2))
    top = logit_scores(logits, "max_probability")
    assert top[0] > 0.99 and top[1] < 0.4
    rule = imagenet_rule(1000)
    assert (rule.score, rule.threshold) == ("max_probability", pytest.approx(0.1))
    scores, flagged = flag_unknown(torch.tensor(logits), None, OutputRules(unknown=UnknownRule("max_probability",
                                                                                                0.5)), None)
    assert flagged.tolist() == [False, True]
    assert flag_unknown(torch.tensor(logits), None, OutputRules(), None) == (None, None)


@pytest.mark.parametrize("description, message", [
    ({"calibration": {"temperature": -1}}, "calibration.temperature"),
    ({"calibration": {"temperature": float("nan")}}, "calibration.temperature"),
    ({"calibration": "hot"}, "calibration must be an object"),
    ({"unknown": {"score": "vibes", "threshold": 0}}, "unknown.score"),
    ({"unknown": {"score": "knn", "threshold": "high"}}, "unknown.threshold"),
    ({"unknown": {"score": "knn", "threshold": 0.5, "neighbours": 0}}, "unknown.neighbours"),
])
def test_bad_rules_in_a_description_are_refused_by_name(description, message):
    with pytest.raises(ValueError, match=message):
        rules_from_description(description)


def test_a_description_without_rules_means_temperature_one_and_no_rule():
    assert rules_from_description({"name": "old"}) == OutputRules(1.0, None)
