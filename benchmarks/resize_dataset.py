"""Copy an MVTec-layout category at one training size, so that it loads exactly as the original does.

    python benchmarks/resize_dataset.py ../shared/data/magnetic_tile small/magnetic_tile --size 96

For moving a dataset where space is short (a device machine takes 64 MiB of working tree): every
image is stored as PNG after ``nsa_augment.detection.datasets.resize_square`` at ``--size``, every
mask after ``mask_at`` (``read_mask``'s rule: any nonzero pixel, nearest neighbour), names kept
(images as ``<stem>.png``, so masks still pair with them).  ``nsa-augment train --image-size SIZE`` then reads
the copy pixel for pixel as it reads the original; each file is checked on the way (a mismatch stops
the copy with the file's name).  8-bit images only: deeper ones are read through their own
intensity range, which a copy could not keep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nsa_augment.detection.datasets import IMAGE_SUFFIXES, mask_at, read_rgb, resize_square  # noqa: E402
from nsa_augment.io import load_image, write_image  # noqa: E402


def copy_resized(src: Path, dst: Path, size: int) -> int:
    """Copy every image and mask below ``src`` to ``dst`` at ``size``; returns the number of files."""
    n = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(src)
        out = (dst / rel).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        img = load_image(path)
        if "ground_truth" in rel.parts:
            mask = mask_at(img, size)
            write_image(out, mask.astype(np.uint8) * np.uint8(255))
            same = np.array_equal(mask_at(load_image(out), size), mask)
        else:
            if img.dtype != np.uint8:
                raise SystemExit(f"resize_dataset: {path} is {img.dtype}, not 8-bit: a resized copy would not load "
                                 "as the original does (deeper images are scaled by their own range)")
            write_image(out, resize_square(img, size))
            same = np.array_equal(read_rgb(out, size), read_rgb(path, size))
        if not same:
            raise SystemExit(f"resize_dataset: {out} does not load as {path} does at {size} px")
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="a category folder (train/, test/, ground_truth/)")
    ap.add_argument("dst", type=Path, help="where the copy goes")
    ap.add_argument("--size", type=int, required=True, help="the --image-size the copy will be trained at")
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        ap.error(f"{args.src} is not a folder")
    n = copy_resized(args.src, args.dst, args.size)
    print(f"{args.dst}: {n} files at {args.size} px, each loading as its original does")
    return 0


if __name__ == "__main__":
    sys.exit(main())
