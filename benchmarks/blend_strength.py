"""How strong are the anomalies? Our NSA, each difference from the reference toggled, and the reference's work.

Run:  python benchmarks/blend_strength.py [--pairs 200] [--size 96] [--preset mvtec/tile] [--json PATH]

The same (destination, source) pairs of real normal images (``../shared/data/magnetic_tile/train/good``
by default, resized to ``--size`` px as the detection benchmark trains; scikit-image photographs when
the folder is absent) go through every variant, each with its own generator seeded alike:

* ``nsa`` — ours with the preset as shipped (exact Poisson solve on the whole patch box, full-size
  rescale clip);
* one row per difference from the reference code, toggled alone (``poisson="opencv"``,
  ``rescale_clip="reference"``, ...);
* ``nsa reference-compatible`` — all of them together;
* ``reference transcription`` — ``reference_nsa.py``, the reference generator's steps with the same
  library calls (``cv2.seamlessClone`` on the whole image).

Per variant: patches blended per example, the mean absolute change inside the blended patches'
boxes (grey levels, channel mean, 0..255), the mean label inside those boxes (the supervision a
network sees), and the share of examples whose label is not empty.  docs/algorithm.md's strength
table is this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from images import DEFAULT_DATA, load_images  # noqa: E402
from reference_nsa import reference_nsa  # noqa: E402

from nsa_augment import presets, synthesize  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)

#: name -> overrides of the preset; each difference from the reference code alone, then all together.
TOGGLES = {
    "nsa": {},
    "poisson='opencv' (seamlessClone's domain, erosion, mixed rule)": {"poisson": "opencv"},
    "rescale_clip='reference'": {"rescale_clip": "reference"},
    "nsa reference-compatible (both)": {"poisson": "opencv", "rescale_clip": "reference"},
}


def _ours(cfg):
    def run(d, s, rng):
        image, label, plan = synthesize(d, s, cfg, rng)
        return image, label, [p.dst_box for p in plan.patches]

    return run


def _reference(cfg):
    def run(d, s, rng):
        return reference_nsa(d, s, cfg, rng, with_region=True)

    return run


def strength(pairs, fn, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    change, mass, labelled, patches, pixels = 0.0, 0.0, 0, [], 0
    for d, s in pairs:
        image, label, box_list = fn(d, s, rng)
        boxes = np.zeros(d.shape[:2], bool)
        for y0, y1, x0, x1 in box_list:
            boxes[y0:y1, x0:x1] = True
        diff = np.abs(image.astype(np.float64) - d.astype(np.float64)).mean(axis=-1)
        change += float(diff[boxes].sum())
        mass += float(label[boxes].sum())
        pixels += int(boxes.sum())
        labelled += bool(label.max() > 0)
        patches.append(len(box_list))
    return {"patches_per_example": float(np.mean(patches)),
            "box_share": pixels / (len(pairs) * pairs[0][0].shape[0] * pairs[0][0].shape[1]),
            "change_in_boxes": change / max(pixels, 1), "label_in_boxes": mass / max(pixels, 1),
            "labelled_examples": labelled / len(pairs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--preset", default="mvtec/tile")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="20 pairs (smoke test)")
    args = ap.parse_args(argv)
    count = 20 if args.quick else args.pairs
    images = load_images(args.size, 64, args.data)
    n = len(images)
    pairs = [(images[i % n], images[(i + 1 + i // n) % n]) for i in range(count)]
    base = presets.get(args.preset)
    variants = {name: _ours(base.replace(**overrides)) for name, overrides in TOGGLES.items()}
    variants["reference transcription (reference_nsa.py)"] = _reference(base)
    print(f"{count} pairs of {args.data.name if args.data.is_dir() else 'scikit-image'} images at {args.size} px, "
          f"preset {args.preset}")
    header = "| variant | patches / example | boxes' share of the image | mean change in boxes (levels) " \
             "| mean label in boxes | examples labelled |"
    print(header + "\n|---|---|---|---|---|---|")
    rows = []
    for name, fn in variants.items():
        r = {"variant": name, **strength(pairs, fn)}
        rows.append(r)
        print(f"| {name} | {r['patches_per_example']:.2f} | {r['box_share']:.3f} | {r['change_in_boxes']:.2f} | "
              f"{r['label_in_boxes']:.3f} | {r['labelled_examples']:.0%} |", flush=True)
    if args.json:
        write_text(args.json, json.dumps({"pairs": count, "size": args.size, "preset": args.preset,
                                          "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
