"""``nsa-augment`` command line: ``preview`` shows what the anomalies look like; ``train`` and ``evaluate``
run the paper's detection model (they need PyTorch, imported only when they run); ``compile`` fills the
kernel cache ahead of time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .detection.settings import EVALUATE_HELP, TRAIN_HELP, add_evaluate_arguments, add_train_arguments
from .gallery import ROW_TITLES, example_row, grid
from .io import find_images, load_image, match_channels, resize_longer_side, write_image
from .methods.nsa import presets, synthesize
from .methods.nsa.config import BLEND_MODES, GRADIENTS, LABEL_MODES

PREVIEW_HELP = """\
Synthesise natural anomalies into normal images and write what came out:

  OUT/gallery.png        source, input, result, label outline and label heat map per row
  OUT/images/NAME.png    every synthesised image, in the input's bit depth (16-bit PNG for 16-bit
                         inputs; TIFF for signed or float data such as CT numbers from DICOM)
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
                   "PNG/JPEG/BMP/TIFF/DICOM, grayscale or colour, 8 or 16 bit, any size")
    p.add_argument("--out", type=Path, default=Path("nsa-preview"), help="output folder (default: %(default)s)")
    p.add_argument("--preset", default="mvtec/cable", help="generator preset (or a JSON file of NSAConfig fields): " + ", ".join(presets.names()) +
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
    add_train_arguments(sub.add_parser("train", help="train and evaluate the NSA detection model (needs torch)",
                                       description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    add_evaluate_arguments(sub.add_parser("evaluate", help="evaluate a trained checkpoint (needs torch)",
                                          description=EVALUATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    p = sub.add_parser("compile", help="compile every kernel into the cache now (for container images)",
                       description=COMPILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-volumes", action="store_true", help="skip the 3-D kernels")
    return parser


COMPILE_HELP = """\
Compile every Numba kernel of nsa-augment, for every image dtype, into its on-disk cache, so that no
later process compiles anything: run it while building a container image or setting up a shared
environment. Without it each kernel compiles on first use, once per environment: a few seconds for
synthesis, 20-40 s for the first Poisson blend on a mask that is not a rectangle (2-core machine).
The cache is the package's folder when writable, else Numba's user cache, else a folder of yours in
the temporary directory (NUMBA_CACHE_DIR wins when set); it holds code for this machine's CPU. A
second run finds everything cached and compiles nothing.
"""


#: What each command says when interrupted (Ctrl-C): exit status 130, one line.
INTERRUPTED = {
    "preview": "interrupted; every file written so far in {out} is complete",
    "train": "interrupted; the last complete checkpoint is kept (re-run the same command to resume)",
    "evaluate": "interrupted",
    "compile": "interrupted; what compiled so far is cached",
}


def main(argv: list[str] | None = None) -> int:
    """The ``nsa-augment`` command: 0 on success, 2 for a user mistake, 1 for a system error (disk full,
    permissions), 130 when interrupted; one line on stderr, never a traceback, for all of these."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"nsa-augment {args.command}"
    try:
        if args.command == "preview":
            return preview(args)
        if args.command == "compile":
            return compile_kernels(args)
        try:
            from .detection import train
            from .detection.settings import settings_from_args
        except ImportError as exc:
            print(f"{prog}: error: {exc}: the detection model needs PyTorch and albumentations (pip install "
                  "'nsa-augment[torch,albumentations]'; README: choosing a CPU or CUDA build)", file=sys.stderr)
            return 2
        if args.command == "train":
            train.train(settings_from_args(args))
        else:
            train.evaluate_checkpoint(args)
        return 0
    except ValueError as exc:  # bad input: a message, never a traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system's: a full disk, a vanished folder, permissions
        kept = "; the last complete checkpoint is kept (re-run to resume)" if args.command == "train" else ""
        print(f"{prog}: error: {exc}{kept}", file=sys.stderr)
        return 1
    except BaseException as exc:
        if not interrupted(exc):
            raise
        print(f"{prog}: " + INTERRUPTED[args.command].format(out=getattr(args, "out", "")), file=sys.stderr)
        return 130


def compile_kernels(args) -> int:
    from .precompile import compile_all

    done = compile_all(volumes=not args.no_volumes)
    what = (f"compiled {done['compiled']} kernel versions (one per kernel and argument types)" if done["compiled"]
            else "nothing to compile: every kernel was cached")
    print(f"nsa-augment compile: {what} in {done['seconds']:.1f} s; cache: {done['cache']}")
    return 0


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a Ctrl-C (a KeyboardInterrupt inside a compiled call reaches
    Python as a SystemError whose cause is the interrupt)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _config(args):
    cfg = presets.load(args.preset)
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


def _unique_names(names: list[str]) -> list[str]:
    """The names with collisions numbered (``x``, ``x_2``, ...), never reusing a name already taken."""
    used, out = set(), []
    for name in names:
        unique, k = name, 1
        while unique in used:
            k += 1
            unique = f"{name}_{k}"
        used.add(unique)
        out.append(unique)
    return out


def _inputs(args) -> list[Path]:
    """Image files under the inputs, leaving out this run's own output folder (it may lie inside an input)."""
    out = args.out.resolve()
    found = [f for inp in args.inputs for f in find_images(inp)]
    files = [f for f in found if out not in f.resolve().parents]
    if not files:
        where = f" outside the output folder {args.out}" if found else ""
        raise ValueError(f"no image files found in {', '.join(args.inputs)}{where}")
    return files


def preview(args) -> int:
    cfg = _config(args)
    if args.size < 0 or args.limit < 0 or args.rows < 0:
        raise ValueError("--size, --limit and --rows must not be negative")
    if args.inputs:
        files = _inputs(args)
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

    names = _unique_names([name for name, _ in items])
    items = [(name, resize_longer_side(img, args.size)) for name, (_, img) in zip(names, items)]
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    n = len(items)
    for i, (name, image) in _progress(list(enumerate(items)), n, "synthesising"):
        source = match_channels(items[(i + 1) % n][1], image) if n > 1 else image
        result, label, _ = synthesize(image, source, cfg, rng)
        # every file is written to a temporary name and renamed: an interrupt never leaves a truncated PNG
        write_image(args.out / "images" / f"{name}{'.png' if result.dtype in (np.uint8, np.uint16) else '.tif'}",
                    result)
        scaled = label if cfg.label == "intensity" else label * 255
        write_image(args.out / "labels" / f"{name}.png", np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        if len(rows) < args.rows:
            rows.append(example_row(source, image, result, label))
    wrote = f"{n} image/label pairs to {args.out}/images, {args.out}/labels"
    if rows:
        gallery = write_image(args.out / "gallery.png", grid(rows, ROW_TITLES, cell=192))
        wrote = f"{gallery} and {wrote}"
    else:
        wrote = f"{wrote} (no gallery: --rows 0)"
    print(f"wrote {wrote} (preset {cfg.name}, label {cfg.label})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
