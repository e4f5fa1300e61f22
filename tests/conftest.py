"""Shared fixtures: real images from ../shared/data (as CI lays it out), else scikit-image's samples."""

from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MAGNETIC_TILE = SHARED_DATA / "magnetic_tile"


def _load_rgb(size: int, count: int) -> list[np.ndarray]:
    files = sorted((MAGNETIC_TILE / "train" / "good").glob("*.jpg"))[:count]
    images = []
    for f in files:
        gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        images.append(cv2.resize(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), (size, size), interpolation=cv2.INTER_AREA))
    if len(images) < count:  # outside the project's checkout layout: bundled photographs
        from skimage import data

        for img in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()):
            images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return images[:count]


@pytest.fixture(scope="session")
def tiles128() -> list[np.ndarray]:
    """Four real 128x128 RGB uint8 images (magnetic tile)."""
    return _load_rgb(128, 4)


@pytest.fixture(scope="session")
def object_scene():
    """Two 96x96 RGB images of a dark, textured object on a bright background (like MVTec bottle/screw)."""
    rng = np.random.default_rng(7)
    out = []
    for cy, cx, r in ((48, 48, 30), (44, 52, 26)):
        img = np.full((96, 96, 3), 235, np.uint8)
        yy, xx = np.mgrid[:96, :96]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        texture = rng.integers(20, 120, (96, 96, 3), dtype=np.uint8)
        img[disk] = cv2.GaussianBlur(texture, (0, 0), 1.5)[disk]
        out.append(img)
    return out
