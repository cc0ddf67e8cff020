"""The device input pipeline, run on the CPU (decode_jpeg with device=cpu): same checks, same answers as
the PIL path. On CUDA the same functions run with device=cuda (see test_device_pipeline_on_cuda)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks._common import photo_like_jpeg
from cardinal.engine.data.device_images import (
    DeviceJpeg,
    check_for_device,
    decode_jpegs,
    device_batches,
    one_on_device,
    preprocess_tensors,
)
from cardinal.engine.data.images import load_image
from cardinal.engine.inference.classifier import Classifier
from tests.conftest import encode, make_tiny_model, random_picture, shape_picture

# fp32 probabilities of the two paths differ by ~2e-4 on these pictures (resampling rounds differently);
# the bound leaves room and stays below bf16's own precision (2^-8 = 0.004).
PROBABILITY_TOLERANCE = 2e-3


def rotated_jpeg(seed: int) -> bytes:
    image = random_picture(seed)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return encode(image, "JPEG", exif=exif.tobytes())


@pytest.fixture
def pictures(tmp_path):
    """JPEGs of several sizes (large ones take Pillow's reduced-size decode), and the files that must
    not reach the device: a PNG, an EXIF-rotated JPEG, a CMYK JPEG, damaged and truncated JPEGs."""
    paths = []
    for index in range(10):
        path = tmp_path / f"photo{index}.jpg"
        path.write_bytes(photo_like_jpeg(index, (640, 480) if index % 2 else (97, 75)))
        paths.append(path)
    for index in range(3):
        path = tmp_path / f"shape{index}.jpg"
        shape_picture("green_squares", index).convert("L").save(path, "JPEG", quality=90)  # greyscale
        paths.append(path)
    special = {
        "plain.png": encode(random_picture(1), "PNG"),
        "rotated.jpg": rotated_jpeg(2),
        "cmyk.jpg": encode(random_picture(3).convert("CMYK"), "JPEG"),
        "truncated.jpg": photo_like_jpeg(4)[:3000],
        "text.jpg": b"not a picture at all",
    }
    for name, data in special.items():
        (tmp_path / name).write_bytes(data)
        paths.insert(len(paths) // 2, tmp_path / name)
    return paths


def test_only_jpegs_that_decode_alike_go_to_the_device(pictures, tmp_path):
    by_name = {path.name: check_for_device(path) for path in pictures}
    assert isinstance(by_name["photo0.jpg"], DeviceJpeg) and by_name["photo1.jpg"].size == (640, 480)
    assert isinstance(by_name["shape0.jpg"], DeviceJpeg)  # greyscale decodes to the same RGB
    for name in ("plain.png", "rotated.jpg", "cmyk.jpg", "text.jpg"):
        assert by_name[name] is None, name
    strip = tmp_path / "strip.jpg"  # within the pixel limit, beyond the aspect-ratio limit
    strip.write_bytes(encode(Image.new("RGB", (2020, 20), (9, 9, 9)), "JPEG"))
    assert check_for_device(strip) is None
    assert check_for_device(tmp_path / "missing.jpg") is None
    assert check_for_device(tmp_path) is None  # a folder


def test_tensor_preprocessing_matches_the_pil_path(pictures):
    model = make_tiny_model()
    jpegs = [check_for_device(path) for path in pictures if path.name.startswith(("photo0", "photo2", "shape"))]
    decoded = decode_jpegs(jpegs, torch.device("cpu"))
    batch = preprocess_tensors(decoded, model.preprocess)
    reference = torch.stack([model.preprocess(load_image(item.path)) for item in jpegs])
    assert batch.shape == reference.shape == (len(jpegs), 3, 64, 64)
    # One 8-bit step is 1/255/std ≈ 0.02 after normalisation; decoders and resamplers differ by about that.
    assert (batch - reference).abs().mean() < 0.01
    assert (batch - reference).abs().max() < 0.1


def test_a_batch_with_damaged_data_is_refused_whole():
    good = photo_like_jpeg(0, (64, 48))
    damaged = bytearray(good)
    damaged[len(damaged) // 2 :] = b"\x00" * (len(damaged) - len(damaged) // 2)
    items = [DeviceJpeg(None, torch.frombuffer(bytearray(data), dtype=torch.uint8), (64, 48))
             for data in (good, bytes(damaged)[:700])]
    assert decode_jpegs(items[:1], torch.device("cpu"))[0].shape == (3, 48, 64)
    assert decode_jpegs(items, torch.device("cpu")) is None


def test_folder_results_agree_with_the_pil_path(pictures):
    classifier = Classifier(make_tiny_model(), device="cpu", precision="fp32")
    reference = list(classifier.classify_files(pictures, k=2, batch_size=4, on_device=False))
    device = list(classifier.classify_files(pictures, k=2, batch_size=4, on_device=True))
    assert [r.path for r in device] == [r.path for r in reference] == pictures
    for ours, theirs in zip(device, reference, strict=True):
        if theirs.error is not None:  # the same file fails, with the loader's own reason
            assert ours.error is not None and ours.error.reason == theirs.error.reason, ours.path
            continue
        assert ours.error is None, ours.path
        assert ours.analysis.predictions[0].index == theirs.analysis.predictions[0].index, ours.path
        assert np.abs(ours.analysis.probabilities - theirs.analysis.probabilities).max() < PROBABILITY_TOLERANCE
        # The device decodes at full size; Pillow's reduced-size decode gives the same picture smaller.
        (width, height), (their_width, their_height) = ours.analysis.image_size, theirs.analysis.image_size
        assert width >= their_width and width / height == pytest.approx(their_width / their_height, rel=0.01)
    # The text and the truncated file fail; the PNG, CMYK and rotated pictures classify through the CPU path.
    assert sorted(r.path.name for r in device if r.error is not None) == ["text.jpg", "truncated.jpg"]


def test_one_image_takes_the_device_path_when_asked(pictures, monkeypatch):
    classifier = Classifier(make_tiny_model(), device="cpu", precision="fp32")
    photo, rotated = pictures[1], next(path for path in pictures if path.name == "rotated.jpg")
    reference = [classifier.analyze_source(path, k=1) for path in (photo, rotated)]
    monkeypatch.setenv("CARDINAL_DEVICE_PIPELINE", "on")
    assert one_on_device(photo.read_bytes(), classifier.model.preprocess, torch.device("cpu"))[1] == (640, 480)
    assert one_on_device(rotated, classifier.model.preprocess, torch.device("cpu")) is None  # the CPU path turns it
    for path, theirs in zip((photo, rotated), reference, strict=True):
        ours = classifier.analyze_source(path.read_bytes(), k=1)
        assert ours.predictions[0].index == theirs.predictions[0].index
        assert np.abs(ours.probabilities - theirs.probabilities).max() < PROBABILITY_TOLERANCE


def test_closing_early_stops_the_reading(pictures):
    batches = device_batches(pictures * 20, make_tiny_model().preprocess, torch.device("cpu"), batch_size=2,
                             draft_size=72, workers=2)
    entries, batch = next(batches)
    assert len(entries) == 2 and batch.shape[0] == 2
    batches.close()  # returns promptly: the work not started is cancelled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_pipeline_on_cuda(pictures):
    classifier = Classifier(make_tiny_model(), device="cuda", precision="fp32")
    reference = list(classifier.classify_files(pictures, k=1, batch_size=4, on_device=False))
    device = list(classifier.classify_files(pictures, k=1, batch_size=4))
    for ours, theirs in zip(device, reference, strict=True):
        assert (ours.error is None) == (theirs.error is None)
        if ours.error is None:
            assert ours.analysis.predictions[0].index == theirs.analysis.predictions[0].index
            assert np.abs(ours.analysis.probabilities - theirs.analysis.probabilities).max() < PROBABILITY_TOLERANCE



def test_the_device_check_of_a_jpeg_with_damaged_exif_warns_nothing():
    import io
    import warnings

    from cardinal.engine.data.device_images import check_for_device

    exif = Image.Exif()
    exif[0x010E] = "a description long enough to be stored after the tag table"
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, "JPEG", exif=exif.tobytes()[: 6 + 8 + 2 + 5])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_for_device(buffer.getvalue())
    assert [str(w.message) for w in caught] == []
