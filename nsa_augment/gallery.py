"""Picture grids of synthetic anomalies: source, destination, result, label heat map."""

from __future__ import annotations

import cv2
import numpy as np

from .intensity import intensity_range, to_unit


def to_rgb8(image: np.ndarray, intensity: tuple[float, float] | None = None) -> np.ndarray:
    """Any (H, W) / (H, W, C) image as RGB uint8 for display.

    uint8 as it is; other dtypes through ``intensity`` (default: [0, 1] for
    float32 images within it, else the image's own min..max).
    """
    if image.dtype == np.uint8 and intensity is None:
        img = image
    else:
        if intensity is None:
            unit = image.dtype == np.float32 and image.size and image.min() >= 0 and image.max() <= 1
            intensity = (0.0, 1.0) if unit else intensity_range(image, "image")
        img = np.clip(np.rint(to_unit(image, *intensity) * 255), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def heatmap(label: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A label map as an RGB uint8 heat map (inferno), 0 black; ``vmax`` defaults to max(1, label.max())."""
    vmax = max(1.0, float(label.max())) if vmax is None else vmax
    scaled = np.clip(label / vmax * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def outline(image: np.ndarray, label: np.ndarray, color=(0, 255, 0)) -> np.ndarray:
    """``image`` (RGB uint8) with the label's outline drawn on it."""
    out = image.copy()
    contours, _ = cv2.findContours((label > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1)
    return out


def grid(rows: list[list[np.ndarray]], titles: list[str] | None = None, cell: int = 192, pad: int = 4,
         row_titles: list[str] | None = None) -> np.ndarray:
    """Tile RGB uint8 images into a grid (each resized to fit a ``cell`` square), with column and row titles."""
    ncols = max(len(r) for r in rows)
    head = 22 if titles else 0
    left = 110 if row_titles else 0
    H = head + len(rows) * (cell + pad) + pad
    W = left + ncols * (cell + pad) + pad
    canvas = np.full((H, W, 3), 255, np.uint8)
    for c, t in enumerate(titles or []):
        cv2.putText(canvas, t, (left + pad + c * (cell + pad) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r, t in enumerate(row_titles or []):
        y = head + pad + r * (cell + pad) + cell // 2
        cv2.putText(canvas, t, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            h, w = img.shape[:2]
            s = cell / max(h, w)
            small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
            y = head + pad + r * (cell + pad)
            x = left + pad + c * (cell + pad)
            canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


def example_row(source, destination, image, label, intensity: tuple[float, float] | None = None) -> list[np.ndarray]:
    """One gallery row: source, destination, result, result with label outline, label heat map.

    ``intensity``: the display range of destination and result (default: the
    destination's, see :func:`to_rgb8`), so that both are shown on one scale.
    """
    if intensity is None and destination.dtype != np.uint8:
        unit = destination.dtype == np.float32 and destination.min() >= 0 and destination.max() <= 1
        intensity = (0.0, 1.0) if unit else intensity_range(destination, "image")
    result = to_rgb8(image, intensity)
    return [to_rgb8(source), to_rgb8(destination, intensity), result, outline(result, label), heatmap(label)]


ROW_TITLES = ["source", "destination", "result", "label outline", "label"]
