"""Shared fixtures: real images from ../shared/data (as CI lays it out), else scikit-image's samples."""

import shutil
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


def levels_as(values: np.ndarray, dtype) -> np.ndarray:
    """Integer levels 0..255 as an image of ``dtype``: uint8 as is, uint16 x 257, CT-like int16 x 8 - 1024,
    float32 / 255 (the property tests' images in every dtype the package takes)."""
    if dtype == np.uint8:
        return values.astype(np.uint8)
    if dtype == np.uint16:
        return (values * 257).astype(np.uint16)
    if dtype == np.int16:
        return (values * 8 - 1024).astype(np.int16)
    return (values / 255).astype(np.float32)


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


def make_category(root: Path, name: str = "tiles") -> Path:
    """A tiny MVTec-layout category from real images: 6 train, 3 good + 3 defect test images, one without mask."""
    base = root / name
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (base / sub).mkdir(parents=True)
    src = MAGNETIC_TILE
    if src.is_dir():
        train = sorted((src / "train" / "good").glob("*.jpg"))[:6]
        good = sorted((src / "test" / "good").glob("*.jpg"))[:3]
        cracks = sorted((src / "test" / "crack").glob("*.jpg"))[:3]
        for f in train:
            shutil.copy(f, base / "train" / "good" / f.name)
        for f in good:
            shutil.copy(f, base / "test" / "good" / f.name)
        for f in cracks:
            shutil.copy(f, base / "test" / "crack" / f.name)
        for f in cracks[:2]:
            shutil.copy(src / "ground_truth" / "crack" / f"{f.stem}_mask.png", base / "ground_truth" / "crack")
    else:  # outside the checkout layout: synthetic stand-ins
        rng = np.random.default_rng(0)
        for i in range(6):
            cv2.imwrite(str(base / "train" / "good" / f"{i:03d}.png"), rng.integers(90, 110, (70, 90), dtype=np.uint8))
        for i in range(3):
            cv2.imwrite(str(base / "test" / "good" / f"{i:03d}.png"), rng.integers(90, 110, (70, 90), dtype=np.uint8))
            img = rng.integers(90, 110, (70, 90), dtype=np.uint8)
            img[20:30, 20:50] = 200
            cv2.imwrite(str(base / "test" / "crack" / f"{i:03d}.png"), img)
            if i < 2:
                mask = np.zeros((70, 90), np.uint8)
                mask[20:30, 20:50] = 255
                cv2.imwrite(str(base / "ground_truth" / "crack" / f"{i:03d}_mask.png"), mask)
    return root
