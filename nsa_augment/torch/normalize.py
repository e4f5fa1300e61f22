"""``A.Normalize`` for uint8 batches on the training device, with the values it gives in a worker.

DataLoader workers hand every batch to the main process through shared memory, and uint8 images are
a quarter of float32's bytes (docs/performance.md, *In a real DataLoader*): leave ``Normalize`` out of
the workers' pipeline and apply :class:`Uint8Normalize` to the batch on the device instead.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["Uint8Normalize"]


class Uint8Normalize(torch.nn.Module):
    """Apply an Albumentations ``Normalize`` to a uint8 batch, bit for bit as it normalises each image.

    The transform's own output for each value 0..255 of each channel is computed once (on a ramp of
    the 256 values) and looked up, so the result is the same whichever Albumentations version or
    implementation (a lookup table, OpenCV, NumPy) produced it.  Move the module to the batch's
    device once (``.to(device)``): its tables then never leave it.

    Parameters
    ----------
    normalize : albumentations.Normalize
        With ``normalization="standard"`` (fixed mean and std) and ``p=1``.  Per-image statistics depend on the
        whole image and cannot be looked up per value: those stay in the workers.
    channels : int
        The images' channel count (default 3).

    Examples
    --------
    >>> import albumentations as A, torch
    >>> norm = A.Normalize()                                   # ImageNet mean and std
    >>> images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    >>> out = Uint8Normalize(norm)(images)
    >>> expected = norm(image=images[1].permute(1, 2, 0).numpy())["image"]
    >>> out.dtype, out.shape, bool((out[1].permute(1, 2, 0).numpy() == expected).all())
    (torch.float32, torch.Size([2, 3, 8, 8]), True)
    """

    def __init__(self, normalize, channels: int = 3):
        super().__init__()
        how = getattr(normalize, "normalization", None)
        if how != "standard":
            raise ValueError(f"Uint8Normalize needs an A.Normalize with normalization='standard', got "
                             f"{type(normalize).__name__} with normalization={how!r}: per-image statistics cannot "
                             "be looked up per value; keep that transform in the workers' pipeline")
        if getattr(normalize, "p", 1.0) != 1.0:  # a ramp drawn unnormalised would make an identity table
            raise ValueError(f"Uint8Normalize needs an A.Normalize applied always (p=1), got p={normalize.p}: "
                             "one that normalises some images only is no per-batch map")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], channels, axis=2)
        values = np.asarray(normalize(image=ramp)["image"])
        if values.shape != (1, 256, channels) or values.dtype != np.float32:
            raise ValueError(f"the transform turned a uint8 (1, 256, {channels}) image into {values.dtype} "
                             f"{values.shape}: it is not a per-pixel normalisation of that many channels")
        self.channels = channels
        table = torch.from_numpy(np.ascontiguousarray(values[0].T, dtype=np.float32).ravel())
        self.register_buffer("table", table, persistent=False)  # (channels * 256,): channel c's values at c * 256
        self.register_buffer("offsets", (torch.arange(channels) * 256).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, C, H, W), on the module's device."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"Uint8Normalize takes a uint8 (B, C, H, W) tensor, got "
                            f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        if images.shape[1] != self.channels:
            raise ValueError(f"images have {images.shape[1]} channels, this normaliser {self.channels}")
        return self.table[images.long() + self.offsets]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
