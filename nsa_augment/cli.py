"""``nsa-augment`` command line: ``nsa-augment preview`` shows what the anomalies look like."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from .gallery import ROW_TITLES, example_row, grid
from .io import find_images, load_image, match_channels, resize_longer_side
from .methods.nsa import presets, synthesize
from .methods.nsa.config import BLEND_MODES, GRADIENTS, LABEL_MODES

PREVIEW_HELP = """\
Synthesise natural anomalies into normal images and write what came out:

  OUT/gallery.png        source, input, result, label outline and label heat map per row
  OUT/images/NAME.png    every synthesised image
  OUT/labels/NAME.png    every label map, 8-bit (0..1 labels scaled to 0..255; intensity labels as is)

Each image gets its patches from the next image of the list (a different normal image, as in
training); a single image is its own source. Without INPUT the command runs on real sample images
that scikit-image ships (three textures, five photographs), so it needs nothing else.

examples:
  nsa-augment preview                                   # bundled sample images
  nsa-augment preview ../shared/data/magnetic_tile/train/good --preset mvtec/carpet --limit 40
  nsa-augment preview a.png b.jpg --label binary --out my-preview
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nsa-augment", description="Natural Synthetic Anomalies (NSA) tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("preview", help="write a gallery of synthetic anomalies", description=PREVIEW_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders (searched recursively); "
                   "PNG/JPEG/BMP/TIFF, grayscale or colour, any size")
    p.add_argument("--out", type=Path, default=Path("nsa-preview"), help="output folder (default: %(default)s)")
    p.add_argument("--preset", default="mvtec/cable", help="generator preset: " + ", ".join(presets.names()) +
                   " (default: %(default)s)")
    p.add_argument("--label", choices=LABEL_MODES, help="override the preset's label mode")
    p.add_argument("--gradients", choices=GRADIENTS, help="override the preset's Poisson guidance")
    p.add_argument("--blend", choices=BLEND_MODES, help="override the preset's blend mode")
    p.add_argument("--num-patches", type=int, help="override the preset's maximum number of patches")
    p.add_argument("--size", type=int, default=256,
                   help="resize so that the longer side has this many pixels, 0 to keep the original (default: %(default)s)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many images (default: all)")
    p.add_argument("--rows", type=int, default=8, help="gallery rows (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "preview":
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return preview(args)
    except (ValueError, OSError) as exc:  # bad input: a message, never a traceback
        print(f"nsa-augment preview: error: {exc}", file=sys.stderr)
        return 2


def _config(args):
    cfg = presets.get(args.preset)
    overrides = {k: v for k, v in (("label", args.label), ("gradients", args.gradients), ("blend", args.blend),
                                   ("num_patches", args.num_patches)) if v is not None}
    return cfg.replace(**overrides) if overrides else cfg


def _sample_images() -> list[tuple[str, np.ndarray]]:
    try:
        from skimage import data
    except ImportError:
        raise ValueError("no INPUT given and scikit-image (which ships the sample images) is not installed: "
                         "pip install 'nsa-augment[preview]', or name image files/folders") from None
    names = ("brick", "grass", "gravel", "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
    return [(n, getattr(data, n)()) for n in names]


def _progress(items, total, desc):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: fall back to a plain counter on stderr
        def plain():
            for i, item in enumerate(items, 1):
                if i == total or i % 50 == 0:
                    print(f"{desc}: {i}/{total}", file=sys.stderr)
                yield item
        return plain()
    return tqdm(items, total=total, desc=desc, unit="img", disable=total < 20)


def preview(args) -> int:
    cfg = _config(args)
    if args.size < 0 or args.limit < 0 or args.rows < 0:
        raise ValueError("--size, --limit and --rows must not be negative")
    if args.inputs:
        files = [f for inp in args.inputs for f in find_images(inp)]
        if not files:
            raise ValueError(f"no image files found in {', '.join(args.inputs)}")
        if args.limit:
            files = files[: args.limit]
        items, unreadable = [], []
        for f in _progress(files, len(files), "reading"):
            try:
                items.append((f.stem, load_image(f)))
            except ValueError as exc:
                unreadable.append(str(exc))
        for msg in unreadable:
            print(f"nsa-augment preview: skipped: {msg}", file=sys.stderr)
        if not items:
            raise ValueError("none of the input files could be read")
    else:
        items = _sample_images()[: args.limit or None]

    items = [(name, resize_longer_side(img, args.size)) for name, img in items]
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows, used_names = [], set()
    n = len(items)
    for i, (name, image) in _progress(list(enumerate(items)), n, "synthesising"):
        source = match_channels(items[(i + 1) % n][1], image) if n > 1 else image
        result, label, info = synthesize(image, source, cfg, rng)
        stem = name if name not in used_names else f"{name}_{i}"
        used_names.add(stem)
        _write(args.out / "images" / f"{stem}.png", result)
        scaled = label if cfg.label == "intensity" else label * 255
        _write(args.out / "labels" / f"{stem}.png", np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        if len(rows) < args.rows:
            rows.append(example_row(source, image, result, label))
    gallery = args.out / "gallery.png"
    if rows:
        _write(gallery, grid(rows, ROW_TITLES, cell=192))
    print(f"wrote {gallery} and {n} image/label pairs to {args.out}/images, {args.out}/labels "
          f"(preset {cfg.name}, label {cfg.label})")
    return 0


def _write(path: Path, image: np.ndarray) -> None:
    img = image if image.ndim == 2 or image.shape[2] == 1 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


if __name__ == "__main__":
    sys.exit(main())
