"""The sorting window's work off the GUI thread: finding images, thumbnails, the model's look, and saving."""

from __future__ import annotations

from cardinal.engine.progress import CancelToken
from cardinal.gui.background import background
from cardinal.gui.qimage import array_to_qimage


@background
def thumbnails(paths, side: int, cancel: CancelToken):
    """Yields (path, QImage or None, reason): a small picture of each image, or why it cannot be read."""
    import numpy as np
    from PIL import Image

    from cardinal.engine.data.images import load_image
    from cardinal.engine.errors import ImageLoadError

    for path in paths:
        cancel.raise_if_cancelled("the thumbnails")
        try:
            image = load_image(path, draft_size=side)
        except ImageLoadError as error:
            yield path, None, error.reason
            continue
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
        yield path, array_to_qimage(np.asarray(image)), ""


@background
def measure(classifier, paths, cancel: CancelToken):
    """Yields SuggestProgress; returns the model's probabilities and features for each readable image."""
    from cardinal.engine.inference.suggest import measure as measure_images

    return (yield from measure_images(classifier, paths, cancel=cancel))


@background
def save(assignments, folder, cancel: CancelToken):
    """Yields SaveProgress; returns the engine's SavedImages."""
    from cardinal.engine.data.sorting import save_sorted

    return (yield from save_sorted(assignments, folder, cancel=cancel))
