"""Datasets in the MVTec AD folder layout.

``<root>/<category>/train/good/*``, ``<root>/<category>/test/<type>/*`` and
``<root>/<category>/ground_truth/<type>/<name>_mask.png``.  PNG or JPEG, colour
or grayscale, any and mixed sizes.  A defect image without a mask file is kept
as an *image-level-only* sample: it counts for image AUROC and is left out of
the pixel metrics (``TestSample.mask_path is None``; ``Category.missing_masks``
lists them).  Masks that exist but are empty (a few in the magnetic-tile data)
are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..io import IMAGE_SUFFIXES, load_image


@dataclass(frozen=True)
class TestSample:
    path: Path
    defect: str  # "good" or the defect type
    mask_path: Path | None  # None for good images and for defect images without a mask file

    @property
    def label(self) -> int:
        return int(self.defect != "good")


@dataclass
class Category:
    root: Path
    name: str
    train: list[Path]
    test: list[TestSample]
    missing_masks: list[Path] = field(default_factory=list)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_categories(root: str | Path) -> list[str]:
    """Names of the subfolders of ``root`` that have ``train/good``."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root {root} is not a folder")
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())


def load_category(root: str | Path, name: str) -> Category:
    """Index one category (no pixels are read).

    Raises
    ------
    ValueError
        Wrong root or category (the message lists the categories found), or an
        empty ``train/good`` folder.
    """
    root = Path(root)
    found = find_categories(root)
    if name not in found:
        listing = ", ".join(found) if found else "none (expected <root>/<category>/train/good/)"
        raise ValueError(f"category {name!r} not found under {root}; categories there: {listing}")
    base = root / name
    train = _images(base / "train" / "good")
    if not train:
        raise ValueError(f"{base / 'train' / 'good'} holds no images (PNG/JPEG/...)")
    test, missing = [], []
    test_dir = base / "test"
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []:
        for img in _images(defect_dir):
            mask = None
            if defect_dir.name != "good":
                candidate = base / "ground_truth" / defect_dir.name / f"{img.stem}_mask.png"
                if candidate.is_file():
                    mask = candidate
                else:
                    missing.append(img)
            test.append(TestSample(img, defect_dir.name, mask))
    return Category(root, name, train, test, missing)


def read_rgb(path: Path, size: int) -> np.ndarray:
    """An image file as RGB uint8, resized to ``size`` x ``size`` (grayscale replicated to 3 channels)."""
    img = load_image(path)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=interp))


def read_mask(sample: TestSample, size: int) -> np.ndarray:
    """The ground truth of a test sample at ``size`` x ``size`` (bool); all False for good or mask-less images."""
    if sample.mask_path is None:
        return np.zeros((size, size), bool)
    m = load_image(sample.mask_path)
    if m.ndim == 3:
        m = m.max(axis=2)
    return cv2.resize((m > 127).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
