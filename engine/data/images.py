"""The one image loader: every path or byte string the app decodes goes through `load_image`."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cardinal.engine.errors import ImageLoadError

# Formats people drop on an image classifier; anything else is refused even when renamed.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
)
# Pillow's own default; above it an image is treated as a decompression bomb.
DEFAULT_MAX_PIXELS: int = 89_478_485
# Preprocessing resizes the short side to R px, so an image of aspect ratio A becomes R x A*R pixels,
# whatever its size (Pillow holds RGB at 4 bytes a pixel). At 100:1 the worst accepted image becomes
# 232 x 23,200 = 21.5 MB for ResNeXt's resize of 232, and 512 x 51,200 = 105 MB for a 512 px resize;
# a 1x60000 strip of a few hundred bytes would become 13 GB. 100:1 still takes stitched panoramas
# (up to ~10:1), web banners (~11:1) and long till receipts (~20:1).
MAX_ASPECT_RATIO: int = 100
# No photo is this large (a 100 MP camera's JPEG is ~50 MB); above it a file is refused unopened. Every
# 8-bit image within the pixel limit fits even uncompressed (89 MP x 4 bytes = 358 MB); 16-bit TIFFs
# that large (89 MP x 6 bytes = 537 MB) do not. Files are decoded as they are read, so this limit is
# about refusing junk early, not about memory.
MAX_FILE_BYTES: int = 512 * 2**20
# The first bytes of each allowed format, as Pillow's plugins recognise them (WEBP is checked apart: its
# "WEBP" tag sits after the RIFF size). TIFF: classic and BigTIFF in both byte orders, and the two
# swapped forms Pillow also reads.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"MM*\x00", b"II\x00*"),
}
# Enough to recognise an allowed format, to name another one (ICO, EPS) and to tell text from binary.
_HEAD_BYTES = 64 * 1024

ImageSource = str | Path | bytes


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode `source` (a path or the file's bytes) into an upright RGB image, or raise ImageLoadError.

    `draft_size` lets JPEG decoding skip detail below that shorter side: classification resizes
    to ~232 px anyway, and a 24 MP photo then decodes 8x faster.
    """
    label = name if name is not None else (None if isinstance(source, bytes) else str(source))
    with _open_source(source, label) as file:
        try:
            head = file.read(_HEAD_BYTES)
            file.seek(0)
        except OSError as error:
            raise ImageLoadError(label, f"cannot read file ({error.strerror or error})") from None
        if not head:
            raise ImageLoadError(label, "empty file (0 bytes)")
        image_format = _sniff_format(head)
        if image_format is None:
            raise ImageLoadError(label, _unidentified_reason(head))
        # Pillow reads the rest from the open file as it decodes: the file is never held whole in memory.
        return _decode(file, image_format, head, label, max_pixels, draft_size)


def _sniff_format(head: bytes) -> str | None:
    """Which allowed format the file's first bytes announce (its magic number), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for name, magic in _SIGNATURES.items() if head.startswith(magic)), None)


def _decode(
    file: BinaryIO, image_format: str, head: bytes, label: str | None, max_pixels: int, draft_size: int | None
) -> Image.Image:
    try:
        with quiet_pillow():
            image = Image.open(file, formats=(image_format,))
    except Image.DecompressionBombError:
        raise ImageLoadError(label, _bomb_reason(None, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(label, _bad_header_reason(error, image_format, head)) from None

    width, height = image.size
    if width * height > max_pixels:
        raise ImageLoadError(label, _bomb_reason((width, height), max_pixels))
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageLoadError(label, _aspect_reason(width, height))
    try:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        return to_rgb(_upright(image))
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
        raise ImageLoadError(label, _damage_reason(error, f"{image.format} data")) from None
    except MemoryError:
        raise ImageLoadError(label, "image too large to decode in memory") from None


@contextlib.contextmanager
def quiet_pillow() -> Iterator[None]:
    """Without Pillow's warnings: its bomb warning (our own limit below turns bombs into ImageLoadError) and what
    it says about metadata it skips ("Corrupt EXIF data", reading the JPEG's DPI at open): a damaged EXIF block is
    left aside, as photo viewers do, instead of reaching stderr as noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says, or as stored when its EXIF cannot be read."""
    with quiet_pillow():
        try:
            return ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError):
            return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_high_depth_to_uint8(image)).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """Scale 16-bit, 32-bit integer and float images to 0..255 without clipping their range away.

    NaN (a float image's "no data") becomes black, so an image that is all NaN loads as all black.
    """
    values = np.asarray(image, dtype=np.float64)
    # The range comes from the finite values only: NaN-aware reductions warn when nothing is finite.
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    bottom = float(finite.min()) if finite.size else 0.0
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "F" and bottom >= 0.0 and top <= 1.0:
        scaled = values * 255.0
    elif bottom >= 0 and top <= 255:
        scaled = values
    elif bottom >= 0 and top <= 65535:
        scaled = values / 257.0
    else:
        scaled = (values - bottom) / max(top - bottom, 1e-12) * 255.0
    return np.nan_to_num(np.clip(scaled, 0, 255)).round().astype(np.uint8)


def _open_source(source: ImageSource, label: str | None) -> BinaryIO:
    if isinstance(source, bytes):
        _refuse_size(len(source), label)
        return io.BytesIO(source)
    return open_image_file(source, label)


def open_image_file(path: str | Path, label: str | None = None) -> BinaryIO:
    """Open a regular file of at most MAX_FILE_BYTES for binary reading, or raise ImageLoadError saying why not.

    FIFOs, devices and sockets are refused from their metadata, never opened: opening a FIFO waits for
    a writer, reading /dev/zero never ends, and opening some devices has side effects.
    """
    label = str(path) if label is None else label
    try:
        _refuse_unreadable(os.stat(path), label)
        # Non-blocking, so that a FIFO swapped in after the check cannot hang the open; fstat then
        # checks what was actually opened.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        reason = "broken link: the file it points to does not exist" if os.path.islink(path) else "file not found"
        raise ImageLoadError(label, reason) from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied: Cardinal cannot read this file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the name
        raise ImageLoadError(label, f"cannot read file ({getattr(error, 'strerror', None) or error})") from None
    file = os.fdopen(fd, "rb")
    try:
        _refuse_unreadable(os.fstat(fd), label)
    except BaseException:
        file.close()
        raise
    return file


def _refuse_unreadable(info: os.stat_result, label: str | None) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        _refuse_size(info.st_size, label)
        return
    if stat.S_ISDIR(mode):
        reason = "is a folder, not an image"
    elif stat.S_ISFIFO(mode):
        reason = "is a named pipe (FIFO), not an image file"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        reason = "is a device, not an image file"
    elif stat.S_ISSOCK(mode):
        reason = "is a socket, not an image file"
    else:
        reason = "is not a regular file, not an image file"
    raise ImageLoadError(label, reason)


def _refuse_size(size: int, label: str | None) -> None:
    if size > MAX_FILE_BYTES:
        shown = f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.1f} MB"
        raise ImageLoadError(
            label,
            f"file is {shown}, above Cardinal's {MAX_FILE_BYTES // 2**20} MB limit for an image; "
            "check that it is the right file, or save the image smaller",
        )


def _damage_reason(error: Exception, what: str) -> str:
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return "truncated file: the image data ends early (an incomplete download or copy?)"
    return f"damaged {what} ({error})"


def _bomb_reason(size: tuple[int, int] | None, max_pixels: int) -> str:
    dims = f"{size[0]}x{size[1]} pixels" if size else "far too many pixels"
    return (
        f"image is {dims}, above the {max_pixels:,}-pixel safety limit "
        "(a possible decompression bomb); shrink it before using it"
    )


def _aspect_reason(width: int, height: int) -> str:
    ratio = f"{max(width, height) / max(min(width, height), 1):.1f}".removesuffix(".0")
    return (
        f"image is {width}x{height} pixels, an aspect ratio of {ratio}:1; "
        f"Cardinal accepts up to {MAX_ASPECT_RATIO}:1, crop it first"
    )


def _unidentified_reason(head: bytes) -> str:
    allowed = ", ".join(ALLOWED_FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head)) as other:
                return f"{other.format} images are not supported; convert it to one of {allowed}"
    except Exception:  # noqa: BLE001 - any failure here just means "not an image Pillow knows"
        pass
    if _looks_like_text(head):
        return f"not an image (the file contains text); Cardinal reads {allowed}"
    return f"not an image: the file starts with no known image header; Cardinal reads {allowed}"


def _bad_header_reason(error: Exception, image_format: str, head: bytes) -> str:
    if _looks_like_text(head):  # a note that happens to start with "BM"
        return _unidentified_reason(head)
    if isinstance(error, UnidentifiedImageError):
        return (
            f"damaged {image_format} header: the file starts like a {image_format} image "
            "but the rest of its header cannot be read"
        )
    return _damage_reason(error, f"{image_format} header")


def _looks_like_text(head: bytes) -> bool:
    if head[:1] in (b"{", b"<"):
        return True
    try:
        # Incremental, so that a character cut in two at the end of `head` is not a decoding error.
        text = codecs.getincrementaldecoder("utf-8")().decode(head[:4096])
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\t\n\r\f" for char in text.removeprefix("\ufeff"))


FolderProblem = Callable[[Path, str], None]  # told each folder that cannot be walked, and why


def iter_image_files(paths: Iterable[str | Path], problems: FolderProblem | None = None) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into the paths to classify.

    Files named directly are yielded whatever their suffix so the loader can say what is wrong with
    them; inside folders only image suffixes count, hidden files and folders are skipped. A FIFO or
    device named like an image is yielded too: the loader names it and refuses it without opening it.
    `problems` is told each folder that cannot be walked (see `walk_files`).
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from (child for child in walk_files(path, problems) if child.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def walk_files(folder: str | Path, problems: FolderProblem | None = None) -> Iterator[Path]:
    """Everything below `folder` that is not a folder, depth first in name order, hidden names skipped.

    An explicit stack instead of recursion, so depth has no limit. Linked folders are not entered (as
    `Path.rglob` does not), and a folder already walked is not walked again, so nothing can loop.
    A folder that cannot be listed (permissions, a path longer than the system allows) is told to
    `problems` with the reason, then skipped.
    """
    pending: list[tuple[Path, bool]] = [(Path(folder), True)]  # (path, is a folder to walk)
    walked: set[tuple[int, int]] = set()
    while pending:
        path, is_folder = pending.pop()
        if not is_folder:
            yield path
            continue
        try:
            identity = os.stat(path)
            with os.scandir(path) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as error:
            if problems is not None:
                problems(path, folder_problem(path, error))
            continue
        key = (identity.st_dev, identity.st_ino)
        if key in walked:  # a bind mount of a folder above, say
            continue
        if identity.st_ino:  # some network drives report 0 for every folder: no identity to compare
            walked.add(key)
        for entry in reversed(entries):
            if entry.is_dir(follow_symlinks=False):
                pending.append((path / entry.name, True))
            elif not _is_linked_folder(entry):  # files, links to files, FIFOs, broken links go on
                pending.append((path / entry.name, False))


def folder_problem(path: str | Path, error: OSError) -> str:
    """Why a folder cannot be listed, in words, and that its images are left out."""
    if isinstance(error, PermissionError):
        return "permission denied: Cardinal cannot open this folder, so the images in it are left out"
    if error.errno == errno.ENAMETOOLONG:
        limit = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 260
        return (f"path is too long ({len(os.fsencode(path))} bytes; this system allows {limit}), so the images in "
                "it cannot be opened; move them to a folder higher up")
    return f"cannot open this folder ({error.strerror or error}), so the images in it are left out"


def _is_linked_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to itself: not a folder, and the loader will say why it cannot be read
        return False
