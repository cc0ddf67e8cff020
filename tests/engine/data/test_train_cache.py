"""Full mode's decode-once cache and on-device augmentation, run on the CPU tensors they also take on CUDA."""

from __future__ import annotations

import json
import textwrap

import torch

from cardinal.engine.data.augmentation import augmentation_steps
from cardinal.engine.data.datasets import scan_dataset, train_val_split
from cardinal.engine.data.device_images import device_pipeline_wanted
from cardinal.engine.data.images import load_image
from cardinal.engine.data.train_cache import TrainCache, augment_batch, image_seed
from cardinal.engine.progress import run_to_end
from tests.conftest import make_shapes_folder, make_tiny_model, run_python


def shapes_samples(tmp_path, per_class=4):
    report = run_to_end(scan_dataset(make_shapes_folder(tmp_path / "shapes", per_class=per_class), min_per_class=1))
    return list(report.train)


def test_the_pipeline_is_for_cuda_unless_asked(monkeypatch):
    monkeypatch.delenv("CARDINAL_DEVICE_PIPELINE", raising=False)
    assert not device_pipeline_wanted(torch.device("cpu"))
    assert device_pipeline_wanted(torch.device("cuda"))
    monkeypatch.setenv("CARDINAL_DEVICE_PIPELINE", "on")
    assert device_pipeline_wanted(torch.device("cpu"))
    monkeypatch.setenv("CARDINAL_DEVICE_PIPELINE", "off")
    assert not device_pipeline_wanted(torch.device("cuda"))


def test_cache_holds_images_at_the_training_resize_within_its_budget(tmp_path):
    samples = shapes_samples(tmp_path)
    one_image = 3 * 40 * 40
    cache = TrainCache(samples, 40, budget_bytes=3 * one_image, workers=2)
    first = [cache.image(index) for index in range(len(samples))]
    assert all(image.dtype == torch.uint8 and image.shape == (3, 40, 40) for image in first)  # 72 px squares
    assert cache.cached == 3 and cache.used_bytes == 3 * one_image
    assert cache.image(0) is first[0]  # held: not decoded again
    assert cache.image(len(samples) - 1) is not first[-1]  # past the budget: decoded again, the same picture
    assert torch.equal(cache.image(len(samples) - 1), first[-1])


def test_batches_follow_the_order_and_drop_a_short_last_batch(tmp_path):
    samples = shapes_samples(tmp_path)
    cache = TrainCache(samples, 40, budget_bytes=10**9)
    order = [5, 0, 11, 3, 7, 1, 2]
    batches = list(cache.batches(order, 3, drop_last=True))
    assert [indices.tolist() for _, _, indices in batches] == [[5, 0, 11], [3, 7, 1]]
    for images, labels, indices in batches:
        assert labels.tolist() == [samples[index][1] for index in indices.tolist()]
        assert len(images) == 3
    assert len(list(cache.batches(order, 3, drop_last=False))) == 3


def test_augmentation_is_seeded_per_image_and_normalised(tmp_path):
    samples = shapes_samples(tmp_path)
    preprocess = make_tiny_model().preprocess
    cache = TrainCache(samples, preprocess.resize_size[0], budget_bytes=10**9)
    images = [cache.image(index) for index in range(4)]
    augment = augmentation_steps(preprocess, "trivialaugment")
    seeds = [image_seed(0, 1, index) for index in range(4)]
    state = torch.get_rng_state()
    batch = augment_batch(images, seeds, augment, preprocess, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # nobody else's random numbers moved
    assert batch.shape == (4, 3, 64, 64) and batch.dtype == torch.float32
    assert torch.equal(batch, augment_batch(images, seeds, augment, preprocess, torch.device("cpu")))
    other_epoch = augment_batch(images, [image_seed(0, 2, i) for i in range(4)], augment, preprocess,
                                torch.device("cpu"))
    assert not torch.equal(batch, other_epoch)


def test_without_augmentation_the_batch_is_the_models_own_preprocessing(tmp_path):
    samples = shapes_samples(tmp_path)
    preprocess = make_tiny_model().preprocess
    cache = TrainCache(samples, preprocess.resize_size[0], budget_bytes=10**9)
    batch = augment_batch([cache.image(i) for i in range(3)], [0, 1, 2], augmentation_steps(preprocess, "none"),
                          preprocess, torch.device("cpu"))
    reference = torch.stack([preprocess(load_image(samples[i][0])) for i in range(3)])
    assert (batch - reference).abs().max() < 1e-5  # the 72 px pictures need no resize: identical pixels


TRAIN_TWICE = """
import json, os, sys
from pathlib import Path
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
opened = []
sys.addaudithook(lambda event, args: event == "open" and str(args[0]).startswith(str(folder))
                 and opened.append(str(args[0])))
from cardinal.engine.progress import run_to_end
from cardinal.engine.data.datasets import scan_dataset
from cardinal.engine.training.loop import train
from cardinal.engine.training.recipe import Recipe
from cardinal.engine.models.weights import read_state_dict
from tests.conftest import make_tiny_model
report = run_to_end(scan_dataset(folder))
opened.clear()  # the scan reads every file; count what training reads
recipe = Recipe(mode="full", epochs=2, batch_size=4, lr=1e-3, warmup_epochs=0, patience=None, num_workers=0,
                augmentation="trivialaugment")
run_to_end(train(report, make_tiny_model(), recipe, out / "a", device="cpu"))
first_run = list(opened)
run_to_end(train(report, make_tiny_model(), recipe, out / "b", device="cpu"))
same = all(bool((x == y).all()) for x, y in zip(read_state_dict(out / "a" / "last.safetensors").values(),
                                                 read_state_dict(out / "b" / "last.safetensors").values()))
print(json.dumps({"opened": first_run, "same": same}))
"""


def test_full_mode_on_the_device_pipeline_caches_each_training_image_once_and_is_reproducible(tmp_path):
    folder = make_shapes_folder(tmp_path / "shapes", per_class=5)
    report = run_to_end(scan_dataset(folder))
    train_samples, val_samples = train_val_split(report, 0.2, 0)
    code = "import os; os.environ['CARDINAL_DEVICE_PIPELINE'] = 'on'; import sys; sys.argv = ['x', " \
           f"{str(folder)!r}, {str(tmp_path / 'runs')!r}]\n" + textwrap.dedent(TRAIN_TWICE)
    done = run_python(code, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    opened = result["opened"]
    # Two epochs: every training image read once into the cache, however many epochs, and once more outside
    # training for the features the near-copy check and the 'none of these' bank compare (Full mode has no
    # cached features); validation images once per epoch, then for the run's report twice (the device
    # pipeline's check finds a PNG, which the CPU path decodes), once for the temperature's fit, and a mistake
    # once more for its picture there.
    assert sorted(opened.count(str(path)) for path, _ in train_samples) == [2] * len(train_samples)
    reads = [opened.count(str(path)) for path, _ in val_samples]
    assert all(count in (5, 6) for count in reads), reads
    assert result["same"]  # seeded per image: the same recipe gives the same weights
