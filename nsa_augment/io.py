"""Reading and writing files: images (channel layouts reconciled), and atomic replacement of outputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

#: File suffixes treated as images when scanning folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB (or 2-D grayscale) uint8; 16-bit files are scaled to 8 bits.

    Raises
    ------
    ValueError
        If the file is missing or cannot be decoded (the message names the path).
    """
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise ValueError(f"cannot read image {path}: missing, empty or not a PNG/JPEG/... file OpenCV can decode")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {img.dtype} in {path}: expected 8- or 16-bit")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def match_channels(source: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The source with the image's channel layout and dtype (folders may mix grayscale and colour files)."""
    c_img = 1 if image.ndim == 2 else image.shape[2]
    c_src = 1 if source.ndim == 2 else source.shape[2]
    if c_src != c_img:
        if c_img == 1 and c_src == 3:
            source = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
        elif c_src == 1:
            source = np.repeat(source.reshape(source.shape[0], source.shape[1], 1), c_img, axis=2)
        else:
            raise ValueError(f"cannot use a {c_src}-channel source for a {c_img}-channel image")
        if image.ndim == 3 and source.ndim == 2:
            source = source[:, :, None]
    if source.dtype != image.dtype:
        source = source.astype(np.float32) / 255 if image.dtype == np.float32 else np.clip(np.rint(source * 255), 0, 255).astype(np.uint8)
    return source


def find_images(path: str | Path) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path} is neither an image file nor a folder")
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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
