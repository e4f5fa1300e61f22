"""Datasets in the MVTec AD folder layout.

``<root>/<category>/train/good/*``, ``<root>/<category>/test/<type>/*`` and
``<root>/<category>/ground_truth/<type>/<name>_mask.png``.  PNG or JPEG, colour
or grayscale, any and mixed sizes.  A defect image without a mask file is kept
as an *image-level-only* sample: it counts for image AUROC and is left out of
the pixel metrics (``TestSample.mask_path is None``; ``Category.missing_masks``
lists them).  Masks that exist but are empty (a few in the magnetic-tile data)
are kept as they are.  Any nonzero mask pixel is defect (0/255 and 0/1 masks alike); a mask of
another size than its image is an error, never stretched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..intensity import intensity_range, to_unit
from ..io import IMAGE_SUFFIXES, load_image


@dataclass(frozen=True)
class TestSample:
    __test__ = False  # not a pytest test class
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


def check_test_set(cat: Category) -> None:
    """Refuse, before any training, a test set on which image AUROC is undefined.

    Raises
    ------
    ValueError
        No ``test/`` folder, or no good or no defective test image (the message says which).
    """
    test_dir = cat.root / cat.name / "test"
    if not test_dir.is_dir():
        raise ValueError(f"{test_dir} does not exist: evaluation needs test/good/ and test/<defect>/ images "
                         "(MVTec layout)")
    good = sum(1 for s in cat.test if s.label == 0)
    bad = len(cat.test) - good
    if good == 0 or bad == 0:
        raise ValueError(f"{test_dir} holds {good} good and {bad} defective images: image AUROC needs both "
                         "(good images in test/good/, defects in test/<type>/)")


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (area interpolation when shrinking)."""
    interp = cv2.INTER_AREA if max(img.shape[:2]) > size else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(out.reshape((size, size) + img.shape[2:]))


def read_rgb(path: Path, size: int) -> np.ndarray:
    """An image file as RGB, resized to ``size`` x ``size`` (grayscale replicated to 3 channels).

    8-bit files come back as uint8; deeper ones (16-bit PNG/TIFF, DICOM) as
    float32 in [0, 1] through their intensity range (:mod:`nsa_augment.intensity`:
    each image's min..max), so that no bit is lost on the way to the network.
    """
    return _rgb(load_image(path), size)


def _rgb(img: np.ndarray, size: int) -> np.ndarray:
    if img.dtype != np.uint8:
        img = to_unit(img, *intensity_range(img))
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return resize_square(img, size)


def as_one_dtype(images: list[np.ndarray]) -> list[np.ndarray]:
    """uint8 images as they are, or every image as float32 in [0, 1] when any of them is deeper than 8 bits."""
    if all(img.dtype == np.uint8 for img in images):
        return images
    return [img.astype(np.float32) / 255 if img.dtype == np.uint8 else img for img in images]


def read_mask(sample: TestSample, size: int, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The ground truth of a test sample at ``size`` x ``size`` (bool); all False for good or mask-less images.

    Any nonzero pixel is defect.  With ``image_shape`` (the test image's size
    before resizing), a mask of another size is a ``ValueError``.
    """
    if sample.mask_path is None:
        return np.zeros((size, size), bool)
    m = load_image(sample.mask_path)
    if image_shape is not None and m.shape[:2] != tuple(image_shape):
        raise ValueError(f"mask {sample.mask_path} is {m.shape[0]}x{m.shape[1]} but its image {sample.path} is "
                         f"{image_shape[0]}x{image_shape[1]}: masks must have their image's size")
    return mask_at(m, size)


def mask_at(mask: np.ndarray, size: int) -> np.ndarray:
    """A ground-truth image as a bool ``size`` x ``size`` mask: any nonzero pixel (of any channel) is defect,
    resized by nearest neighbour."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return cv2.resize((mask > 0).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


@dataclass
class TestSet:
    """Test images and ground truth at one resolution."""

    __test__ = False  # not a pytest test class

    samples: list[TestSample]
    images: list[np.ndarray]  # RGB uint8 (size, size, 3)
    masks: np.ndarray  # bool (N, size, size)
    labels: np.ndarray  # int (N,), 1 = defective
    has_mask: np.ndarray  # bool (N,): counts for the pixel metrics

    def __len__(self) -> int:
        return len(self.samples)


def read_test_set(cat: Category, size: int, max_per_type: int = 0) -> TestSet:
    """Read (and check) the test images and masks, at most ``max_per_type`` per defect type (0: all)."""
    samples = cat.test
    if max_per_type:
        per, kept = {}, []
        for s in samples:
            if per.get(s.defect, 0) < max_per_type:
                kept.append(s)
                per[s.defect] = per.get(s.defect, 0) + 1
        samples = kept
    images, masks = [], []
    for s in samples:
        img = load_image(s.path)
        masks.append(read_mask(s, size, img.shape[:2]))
        images.append(_rgb(img, size))
    return TestSet(
        samples, as_one_dtype(images), np.stack(masks) if masks else np.zeros((0, size, size), bool),
        np.array([s.label for s in samples], dtype=np.int64),
        np.array([s.label == 0 or s.mask_path is not None for s in samples], dtype=bool),
    )
