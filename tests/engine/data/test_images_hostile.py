"""Hostile and clumsy input for the one image loader: shapes, special files, huge files, deep folders."""

import json
import os
import socket
import sys
import tempfile
import tracemalloc

import pytest
from PIL import Image

from cardinal.engine.data.images import MAX_ASPECT_RATIO, MAX_FILE_BYTES, iter_image_files, load_image, walk_files
from cardinal.engine.errors import ImageLoadError
from tests.conftest import deep_folder, encode, run_python


def strip_png(width: int, height: int) -> bytes:
    return encode(Image.new("1", (width, height), 1), "PNG")


@pytest.mark.parametrize("size", [(1, 60000), (60000, 1)])
def test_extreme_aspect_ratio_is_refused_with_the_limit_and_the_fix(tmp_path, size):
    path = tmp_path / "strip.png"
    path.write_bytes(strip_png(*size))
    assert path.stat().st_size < 1000  # a few hundred bytes that would resize to a 13 GB image
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert info.value.reason == (
        f"image is {size[0]}x{size[1]} pixels, an aspect ratio of 60000:1; "
        f"Cardinal accepts up to {MAX_ASPECT_RATIO}:1, crop it first"
    )


def test_aspect_ratio_right_at_the_limit_loads_and_just_above_is_refused():
    assert load_image(strip_png(3, 3 * MAX_ASPECT_RATIO)).size == (3, 3 * MAX_ASPECT_RATIO)
    assert load_image(strip_png(2 * MAX_ASPECT_RATIO, 2)).size == (2 * MAX_ASPECT_RATIO, 2)
    with pytest.raises(ImageLoadError, match=rf"aspect ratio of {MAX_ASPECT_RATIO}\.5:1"):
        load_image(strip_png(2, 2 * MAX_ASPECT_RATIO + 1))


# Loads one file and runs torchvision's ImageNet preprocessing (resize 232, crop 224) on it in a fresh
# Python, reporting the peak resident memory after torch is imported and warmed up, and at the end.
PEAK_RSS_CHILD = """
import json, resource, sys
from PIL import Image
from torchvision.models import ResNeXt50_32X4D_Weights
from torchvision.transforms._presets import ImageClassification
from cardinal.engine.errors import ImageLoadError
from cardinal.engine.data.images import load_image

def peak_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024

resize = int(sys.argv[2])
if resize == 232:
    preprocess = ResNeXt50_32X4D_Weights.IMAGENET1K_V2.transforms()
else:
    preprocess = ImageClassification(crop_size=resize - 32, resize_size=resize)
preprocess(Image.new("RGB", (300, 300)))
baseline = peak_mb()
try:
    outcome = list(preprocess(load_image(sys.argv[1])).shape)
except ImageLoadError as error:
    outcome = error.reason
print(json.dumps({"baseline_mb": baseline, "peak_mb": peak_mb(), "outcome": outcome}))
"""


def peak_rss(path, resize: int = 232) -> dict:
    code = f"import sys; sys.argv[1:] = [{str(path)!r}, '{resize}']\n" + PEAK_RSS_CHILD
    child = run_python(code, timeout=120)
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    print(f"{path.name} at resize {resize}: {result}")  # shown with -s; the figures the report quotes
    return result


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX-only")
def test_classifying_the_60000_to_1_strip_costs_no_memory(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(strip_png(1, 60000))
    result = peak_rss(path)
    assert "aspect ratio of 60000:1" in result["outcome"]
    assert result["peak_mb"] - result["baseline_mb"] < 30


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX-only")
@pytest.mark.parametrize(("resize", "crop", "bound_mb"), [(232, 224, 60), (512, 480, 160)])
def test_worst_accepted_aspect_ratio_keeps_preprocessing_memory_small(tmp_path, resize, crop, bound_mb):
    # At the limit a resize to R px makes an R x 100R RGB image at 4 bytes a pixel: 21.5 MB for ResNeXt's
    # 232, 105 MB for 512 (see MAX_ASPECT_RATIO); the bounds leave room for Pillow's and torch's copies.
    path = tmp_path / "strip.png"
    path.write_bytes(strip_png(1, MAX_ASPECT_RATIO))
    result = peak_rss(path, resize)
    assert result["outcome"] == [3, crop, crop]
    # torch alone is ~680 MB resident with a CUDA build, so the bound is on what the image adds.
    assert result["peak_mb"] - result["baseline_mb"] < bound_mb


# A regression here hangs (a FIFO waits for a writer) or eats memory (/dev/zero never ends), so the loader
# runs in a child process with a time limit and a 2 GB cap on its memory.
LOAD_CHILD = """
import json, sys
from cardinal.engine.errors import ImageLoadError
from cardinal.engine.data.images import load_image
try:
    load_image(sys.argv[1])
    print(json.dumps("loaded"))
except ImageLoadError as error:
    print(json.dumps(error.reason))
"""


def reason_in_child(path) -> str:
    code = f"import sys; sys.argv[1:] = [{str(path)!r}]\n" + LOAD_CHILD
    child = run_python(code, timeout=120, max_memory=2 * 2**30)  # a hang fails here; speed is bench's business
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout)


@pytest.fixture
def short_dir():
    """A folder with a short path: a socket's path must fit in ~100 bytes."""
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        yield folder


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, sockets and /dev are POSIX")


@posix_only
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    assert reason_in_child(fifo) == "is a named pipe (FIFO), not an image file"


@posix_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_without_being_read(device):
    assert reason_in_child(device) == "is a device, not an image file"


@posix_only
def test_a_socket_is_refused(short_dir):
    path = os.path.join(short_dir, "s.png")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        with pytest.raises(ImageLoadError, match="^.*: is a socket, not an image file$"):
            load_image(path)


@posix_only
def test_special_files_inside_a_folder_are_listed_so_the_loader_names_them(tmp_path):
    os.mkfifo(tmp_path / "b_pipe.png")
    os.symlink("/dev/zero", tmp_path / "c_zero.png")
    (tmp_path / "a.png").write_bytes(encode(Image.new("RGB", (8, 8))))
    os.mkfifo(tmp_path / "pipe_without_suffix")
    found = list(iter_image_files([tmp_path]))
    assert [p.name for p in found] == ["a.png", "b_pipe.png", "c_zero.png"]
    assert [reason_in_child(path) for path in found] == [
        "loaded",
        "is a named pipe (FIFO), not an image file",
        "is a device, not an image file",
    ]


@posix_only
def test_a_broken_link_says_so(tmp_path):
    os.symlink(tmp_path / "moved-away.jpg", tmp_path / "link.jpg")
    with pytest.raises(ImageLoadError, match="broken link: the file it points to does not exist"):
        load_image(tmp_path / "link.jpg")
    assert [p.name for p in iter_image_files([tmp_path])] == ["link.jpg"]


def sparse_file(path, size: int, head: bytes = b"") -> None:
    """A file of `size` bytes that costs no disk: `head`, then a hole that reads as zeros."""
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)


def refusal_and_peak_memory(path) -> tuple[str, int]:
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        return info.value.reason, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_file_is_refused_by_its_size_before_anything_is_read(tmp_path):
    path = tmp_path / "zeros.jpg"
    sparse_file(path, 3 * 2**30)
    reason, peak = refusal_and_peak_memory(path)
    assert reason == (
        "file is 3.0 GB, above Cardinal's 512 MB limit for an image; "
        "check that it is the right file, or save the image smaller"
    )
    assert peak < 50 * 2**20


def test_just_above_the_size_limit_is_refused_and_at_it_is_read(tmp_path):
    above, at = tmp_path / "above.png", tmp_path / "at.png"
    picture = encode(Image.new("RGB", (8, 8)), "PNG")
    sparse_file(above, MAX_FILE_BYTES + 1, picture)
    sparse_file(at, MAX_FILE_BYTES, picture)  # trailing junk after the image's end is ignored
    assert "above Cardinal's 512 MB limit" in refusal_and_peak_memory(above)[0]
    tracemalloc.start()
    try:
        assert load_image(at).size == (8, 8)
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20  # the 512 MB were never read
    finally:
        tracemalloc.stop()


def test_zeros_named_jpg_have_no_image_header_and_only_the_head_is_read(tmp_path):
    path = tmp_path / "zeros.jpg"
    sparse_file(path, 200 * 2**20)
    reason, peak = refusal_and_peak_memory(path)
    assert reason.startswith("not an image: the file starts with no known image header; Cardinal reads JPEG")
    assert peak < 5 * 2**20
    with pytest.raises(ImageLoadError, match="no known image header"):
        load_image(bytes(100), name="pasted")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>\n',
         "not an image (the file contains text)"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n%%EOF\n", "EPS images are not supported"),
        ("caf\u00e9 receipt\n".encode() * 100, "not an image (the file contains text)"),
        (b"BM is how this note starts, a BMP header it is not\n", "not an image (the file contains text)"),
        (b"\xff\xd8\xff" + bytes(64), "damaged JPEG"),
    ],
    ids=["svg", "eps", "utf8-text", "text-like-bmp", "jpeg-magic-then-zeros"],
)
def test_other_contents_named_jpg_keep_their_own_reason(tmp_path, content, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason.startswith(reason)


@posix_only
def test_a_folder_deeper_than_the_recursion_limit_is_walked(tmp_path):
    depth = 1500
    assert depth > sys.getrecursionlimit()
    (tmp_path / "top.png").write_bytes(encode(Image.new("RGB", (8, 8))))
    with deep_folder(tmp_path, depth, encode(Image.new("RGB", (8, 8), (255, 0, 0)))) as deep:
        assert list(iter_image_files([tmp_path])) == [deep, tmp_path / "top.png"]
        assert load_image(deep).getpixel((0, 0)) == (255, 0, 0)


@posix_only
def test_symlink_loops_end_and_linked_folders_are_not_entered(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "a" / "up")  # a/up/a/up/... forever if followed
    os.symlink(tmp_path / "a", tmp_path / "also_a")
    os.symlink("self.png", tmp_path / "self.png")  # a link to itself
    found = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path)]
    assert found == ["a/x.png", "self.png"]
    with pytest.raises(ImageLoadError, match="cannot read file"):
        load_image(tmp_path / "self.png")


def test_walk_order_and_hidden_entries_are_those_of_the_sorted_recursive_glob(tmp_path):
    names = ["a/z.png", "a.png", "a b.png", "a-1.png", "B.png", "\u00e9.png", "a/b/c.png", "ab/.x/y.png",
             ".h.png", "a/.hidden.png", "a/b/d.txt", "Z/1.png"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    expected = [
        path for path in sorted(tmp_path.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(tmp_path).parts)
    ]
    assert list(walk_files(tmp_path)) == expected


@posix_only
def test_classify_command_names_each_hostile_file_and_classifies_the_rest(tmp_path):
    from cardinal.engine.models.registry import save_model
    from tests.conftest import make_tiny_model

    model = save_model(make_tiny_model(("cat", "dog", "fish")), tmp_path / "pets.safetensors")
    fifo, strip, zeros, good = (tmp_path / name for name in ["pipe.jpg", "strip.png", "zeros.jpg", "ok.png"])
    os.mkfifo(fifo)
    strip.write_bytes(strip_png(1, 60000))
    sparse_file(zeros, 3 * 2**30)
    good.write_bytes(encode(Image.new("RGB", (64, 48), (200, 30, 30))))
    argv = ["classify", fifo, "/dev/zero", strip, zeros, good, "--weights", model, "--format", "csv", "--top-k", "1"]
    code = f"import sys; from cardinal.engine.cli.main import main; sys.exit(main({[str(a) for a in argv]!r}))"
    child = run_python(code, timeout=120)
    assert child.returncode == 1  # some files failed, and the run still ended
    assert "ok.png" in child.stdout
    for reason in [
        f"{fifo}: is a named pipe (FIFO), not an image file",
        "/dev/zero: is a device, not an image file",
        f"{strip}: image is 1x60000 pixels, an aspect ratio of 60000:1",
        f"{zeros}: file is 3.0 GB, above Cardinal's 512 MB limit",
    ]:
        assert reason in child.stderr
