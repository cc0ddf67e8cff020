"""One training augmentation for both input paths: the DataLoader's PIL images and the device path's tensors."""

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from cardinal.engine.data.augmentation import augmentation_steps
from tests.conftest import make_tiny_model, random_picture


@pytest.mark.parametrize("augmentation", ["basic", "trivialaugment"])
def test_a_pil_image_and_its_tensor_are_augmented_alike_under_one_seed(augmentation):
    preprocess = make_tiny_model().preprocess
    picture = random_picture(3).resize((80, 72))
    steps = augmentation_steps(preprocess, augmentation)
    outputs = []
    for image in (picture, F.pil_to_tensor(picture)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            outputs.append(steps(image))
    from_pil, from_tensor = np.asarray(outputs[0]).astype(float), outputs[1].permute(1, 2, 0).numpy().astype(float)
    side = preprocess.crop_size[0]
    assert from_pil.shape == from_tensor.shape == (side, side, 3)
    # The same crop, flip and change were drawn; only PIL's and torch's resampling differ, by a few levels.
    assert np.abs(from_pil - from_tensor).mean() < 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        other = np.asarray(steps(picture)).astype(float)
    assert np.abs(from_pil - other).mean() > 8  # another seed is another crop: the check above can fail


def test_none_is_the_models_own_evaluation_geometry():
    preprocess = make_tiny_model().preprocess
    picture = random_picture(4).resize((90, 70))
    expected = preprocess(picture)  # resize, centre crop, normalise
    tensor = F.to_dtype(augmentation_steps(preprocess, "none")(F.pil_to_tensor(picture)), torch.float32, scale=True)
    got = F.normalize(tensor, mean=preprocess.mean, std=preprocess.std)
    assert got.shape == expected.shape and (got - expected).abs().mean() < 0.05
