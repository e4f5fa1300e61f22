"""The normal images every speed benchmark runs on: real magnetic tiles, else scikit-image's photographs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile" / "train" / "good"


def load_images(size: int, count: int, folder: Path = DEFAULT_DATA) -> list[np.ndarray]:
    """``count`` RGB uint8 images of ``size`` x ``size`` px.

    The first ``count`` PNG/JPEG files of ``folder`` (grayscale read as 3-channel, resized with
    area interpolation); when the folder has fewer, four scikit-image photographs fill up the rest,
    every second round mirrored so that no two neighbours are the same array.
    """
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count] \
        if folder.is_dir() else []
    images = [cv2.resize(cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), (size, size),
                         interpolation=cv2.INTER_AREA) for f in files]
    if len(images) < count:
        from skimage import data

        photos = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                  for im in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket())]
        images += [photos[i % 4] if (i // 4) % 2 == 0 else np.ascontiguousarray(photos[i % 4][:, ::-1])
                   for i in range(count - len(images))]
    return images
