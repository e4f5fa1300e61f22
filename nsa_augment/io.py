"""Reading and writing files without losing bits, and atomic replacement of outputs.

Images keep their bit depth: 8- and 16-bit PNG/TIFF/... through OpenCV, DICOM through pydicom
(CT numbers after the rescale slope and intercept), NIfTI volumes through nibabel.  The medical
readers are an optional extra (``pip install "nsa-augment[medical]"``), imported only when a file
needs them.  Everything comes back as one of the dtypes the methods take (uint8, uint16, int16,
float32); :mod:`nsa_augment.intensity` says how their values are read.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .intensity import from_unit, to_unit

DICOM_SUFFIXES = (".dcm", ".dicom")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
#: File suffixes treated as images when scanning folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", *DICOM_SUFFIXES)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _medical(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"reading {what} needs {module.split('.')[0]}: pip install \"nsa-augment[medical]\"") from None


def as_image_dtype(array: np.ndarray) -> np.ndarray:
    """``array`` in the nearest dtype the methods take: integers that fit stay integers (int16, else uint16),
    everything else becomes float32; big-endian data becomes native."""
    a = np.asarray(array)
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype in (np.uint8, np.uint16, np.int16, np.float32):
        return np.ascontiguousarray(a)
    if a.dtype.kind in "iub" or (a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.rint(a))):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        for dtype in (np.uint8, np.int16, np.uint16) if a.dtype.kind in "iub" else (np.int16, np.uint16):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return np.ascontiguousarray(a.astype(dtype))
    return np.ascontiguousarray(a.astype(np.float32))


def load_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image file, keeping its bit depth: (H, W) or RGB (H, W, 3).

    8- and 16-bit PNG, JPEG, TIFF, BMP, WebP (alpha dropped) come back as uint8
    or uint16 (int16 and float32 TIFFs as they are); DICOM (``.dcm``, needs
    pydicom) as int16 or float32 values after the rescale slope and intercept
    (CT numbers in HU).  Volumes are :func:`load_volume`'s.

    Raises
    ------
    ValueError
        If the file is missing, cannot be decoded, is a volume, or needs a
        reader that is not installed (the message names the path and the fix).
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"cannot read image {path}: no such file")
    if suffix in VOLUME_SUFFIXES:
        raise ValueError(f"{path} is a volume: read it with nsa_augment.io.load_volume")
    if suffix in DICOM_SUFFIXES:
        img = _read_dicom(path)
        if img.ndim != 2:
            raise ValueError(f"{path} holds {img.shape[0]} frames (a volume): read it with nsa_augment.io.load_volume")
        return img
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"cannot read image {path}: empty or not a PNG/JPEG/TIFF/... file OpenCV can decode")
    if img.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        img = as_image_dtype(img)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def _read_dicom(path: Path) -> np.ndarray:
    pydicom = _medical("pydicom", f"DICOM file {path}")
    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"cannot read DICOM file {path}: {exc}") from None
    from pydicom.pixels import apply_modality_lut  # rescale slope/intercept: stored values -> CT numbers

    return as_image_dtype(apply_modality_lut(pixels, ds))


def load_volume(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read a volume as a (D, H, W) array (D = slices), keeping its values.

    NIfTI (``.nii``, ``.nii.gz``; needs nibabel): the data array in the file's
    voxel order ``(x, y, z)`` becomes ``(z, y, x)``, so ``volume[k]`` is the
    ``k``-th slice along the file's third axis.  A 4-D file (time series) needs
    ``frame``.  Multi-frame DICOM (needs pydicom): the frames.

    Raises
    ------
    ValueError
        Missing file, unknown format, a 4-D file without ``frame``, a missing reader.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise ValueError(f"cannot read volume {path}: no such file")
    if suffix in DICOM_SUFFIXES:
        vol = _read_dicom(path)
        if vol.ndim != 3:
            raise ValueError(f"{path} is a single 2-D image, not a volume: read it with nsa_augment.io.load_image")
        return vol
    if suffix not in VOLUME_SUFFIXES:
        raise ValueError(f"cannot read {path} as a volume: expected NIfTI (.nii, .nii.gz) or multi-frame DICOM")
    nibabel = _medical("nibabel", f"NIfTI file {path}")
    try:
        data = np.asanyarray(nibabel.load(str(path)).dataobj)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read NIfTI file {path}: {exc}") from None
    if data.ndim == 4:
        if frame is None:
            raise ValueError(f"{path} is 4-D ({data.shape[3]} frames of {data.shape[:3]}): pass frame=0..{data.shape[3] - 1}")
        if not 0 <= frame < data.shape[3]:
            raise ValueError(f"frame must lie in 0..{data.shape[3] - 1} for {path}, got {frame}")
        data = data[..., frame]
    if data.ndim != 3:
        raise ValueError(f"{path} holds a {data.ndim}-D array, not a volume")
    return as_image_dtype(np.transpose(data, (2, 1, 0)))


def match_channels(source: np.ndarray, image: np.ndarray, *, keep_dtype: bool = False) -> np.ndarray:
    """The source with the image's channel layout (folders may mix grayscale and colour files).

    Colour becomes gray by the ITU-R 601 weights, gray becomes colour by
    repetition.  Unless ``keep_dtype``, the dtype is converted too, through the
    dtypes' full ranges (:func:`nsa_augment.intensity.to_unit`, ``from_unit``).
    """
    c_img = 1 if image.ndim == 2 else image.shape[2]
    c_src = 1 if source.ndim == 2 else source.shape[2]
    if c_src != c_img:
        if c_img == 1 and c_src == 3:
            gray = source.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            if source.dtype.kind in "iu":
                info = np.iinfo(source.dtype)
                gray = np.clip(np.rint(gray), info.min, info.max)
            source = gray.astype(source.dtype)
        elif c_src == 1:
            source = np.repeat(source.reshape(source.shape[0], source.shape[1], 1), c_img, axis=2)
        else:
            raise ValueError(f"cannot use a {c_src}-channel source for a {c_img}-channel image")
        if image.ndim == 3 and source.ndim == 2:
            source = source[:, :, None]
    if source.dtype != image.dtype and not keep_dtype:
        source = from_unit(to_unit(source), image.dtype)
    return source


def find_images(path: str | Path) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path} is neither an image file nor a folder")
    return sorted(p for p in path.rglob("*") if _suffix(p) in IMAGE_SUFFIXES and p.is_file())


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the longer side is ``size`` pixels (area interpolation when shrinking); 0 keeps the image."""
    h, w = image.shape[:2]
    if size <= 0 or max(h, w) == size:
        return image
    s = size / max(h, w)
    out = cv2.resize(image, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out.reshape(out.shape[:2] + image.shape[2:])


def replace_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file so that ``path`` is always either its old content or the complete new one.

    ``write(f)`` fills a temporary file in the same folder, which is flushed,
    fsync'ed and renamed over ``path`` (``os.replace`` is atomic on POSIX and
    Windows).  An interrupt, a full disk or an exception from ``write`` leaves
    the previous file untouched and no temporary file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return replace_atomically(path, lambda f: f.write(text.encode("utf-8")))


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Atomically write an image file (format from the suffix); RGB images are converted to OpenCV's BGR order.

    Raises ``OSError`` naming the path if OpenCV cannot encode it.
    """
    path = Path(path)
    img = image if image.ndim == 2 or image.shape[2] == 1 else cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise OSError(f"could not encode {path} (suffix {path.suffix!r})")
    return replace_atomically(path, lambda f: f.write(data.tobytes()))
