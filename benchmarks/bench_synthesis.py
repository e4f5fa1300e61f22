"""Synthetic-anomaly throughput: examples per second per core, side by side in one run.

Run:  python benchmarks/bench_synthesis.py [--json results.json] [--quick] [--data DIR] [--block N]

Real images (../shared/data/magnetic_tile/train/good by default, converted to
RGB and resized to 256 and 512 px; scikit-image photographs when the folder is
absent), in the default environment (no thread variables set; the pools in use
are printed), after warm-up.  Every method synthesises from the same
(destination, source) pairs, and the methods take turns example by example in
an order shuffled anew for every example, so that machine noise hits them
alike; each call then follows other methods' work, its code paths cold in the
caches, as a generator's call follows decoding and other transforms in a data
pipeline.  ``--block N`` takes turns every N examples instead: each method runs
N in a row, warm, as in a loop that only synthesises (the warm runs save
0.2-0.35 ms per call at 256 px on the development VM: docs/performance.md).  Methods:

* ``nsa:<preset>`` — ours, with the paper's class presets: carpet (mixed
  gradients, up to 4 patches, logistic labels), hazelnut (object masks,
  logistic labels) and cable (binary labels, no object masks);
* ``reference:<preset>`` — a transcription of the reference generator's work
  (``reference_nsa.py``: full-image seamlessClone per patch, whole-image medians);
* ``authors:<preset>`` — with ``--authors-code DIR``, the authors' own ``patch_ex`` from a
  checkout of their repository (``authors_nsa.py``), beside the transcription: its rows
  check that ``reference:<preset>`` costs what the code it transcribes costs;
* ``transform:<preset>`` — the same presets through the Albumentations transform
  (``A.Compose([NaturalSyntheticAnomaly.from_preset(...)])``, source under
  ``nsa_source``): plan sampled in the parameter hook, rendered in ``apply``; its
  ratio to ``nsa:<preset>`` is the transform's overhead;
* the peer methods of ``nsa_augment.methods`` (CutPaste, CutPaste-Scar, the NSA
  paper's CutPaste variant, FPI, PII, DRAEM-style), with the carpet preset's
  patch geometry where they use NSA's sampler.  ``--no-peers`` skips them.

Volumes (``--no-volumes`` skips them): ``synthesize_volume`` with the
``medical/brain-mri`` preset on a real brain MRI (nibabel's test data, two
frames, resampled to 64^3 and 128^3 voxels), examples per second; and the 3-D
solver (``poisson_blend_volume``, box and ellipsoid masks) beside the sparse
direct solve of the same system (``poisson_blend_volume_reference``), with the
largest difference between the two.  The reference generator is 2-D only, so
the volume rows have no reference peer.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import thread_environment  # noqa: E402
from images import DEFAULT_DATA, load_images  # noqa: E402
from first_call import NUMBA_FLOOR, REFERENCE, SYNTHESIS, first_call_latency  # noqa: E402
from reference_nsa import reference_nsa  # noqa: E402
from authors_nsa import authors_generator  # noqa: E402

from nsa_augment import methods as nsa_methods  # noqa: E402
from nsa_augment import presets, synthesize, synthesize_volume  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)
from nsa_augment.poisson import poisson_blend_volume  # noqa: E402
from nsa_augment.poisson.reference import poisson_blend_volume_reference  # noqa: E402



def configs() -> dict[str, object]:
    return {
        "carpet": presets.get("mvtec/carpet"),
        "hazelnut": presets.get("mvtec/hazelnut"),
        "cable": presets.get("mvtec/cable").replace(label="binary"),
    }


PEERS = ("cutpaste", "cutpaste-scar", "cutpaste-nsa", "fpi", "pii", "draem")


def _transform(cfg):
    """fn(destination, source, rng) through an Albumentations pipeline.

    The transform draws from ``rng`` (handed over with albumentations 2.0.8's
    ``set_random_state``), so that it renders exactly the plans ``nsa:<preset>``
    renders and the ratio of the two is the transform's own overhead.
    """
    import random

    import albumentations as A

    from nsa_augment import NaturalSyntheticAnomaly

    transform = NaturalSyntheticAnomaly(cfg, p=1.0)
    pipeline = A.Compose([transform], seed=0)
    handed = []

    def run(d, s, rng):
        if not handed and hasattr(transform, "set_random_state"):
            transform.set_random_state(rng, random.Random(0))
            handed.append(True)
        out = pipeline(image=d, mask=np.zeros(d.shape[:2], np.float32), nsa_source=s)
        return out["image"], out["mask"]

    return run


def methods(cfgs, peers: bool = True, authors_code: Path | None = None) -> dict[str, callable]:
    """name -> fn(destination, source, rng) returning (image, label)."""
    out = {}
    for key, cfg in cfgs.items():
        out[f"nsa:{key}"] = lambda d, s, rng, cfg=cfg: synthesize(d, s, cfg, rng)[:2]
        out[f"reference:{key}"] = lambda d, s, rng, cfg=cfg: reference_nsa(d, s, cfg, rng)
        if authors_code is not None:
            out[f"authors:{key}"] = authors_generator(authors_code, cfg)
        out[f"transform:{key}"] = _transform(cfg)
    if peers:
        for name in PEERS:
            gen = nsa_methods.generator(name, "mvtec/carpet")
            out[f"peer:{name}"] = lambda d, s, rng, gen=gen: gen(d, s, rng)[:2]
    return out


def run(images, fns, examples: int, seed: int = 0, block: int = 1) -> dict[str, dict]:
    """Time every method on the same pairs: methods take turns, in a fresh random order, every ``block`` examples.

    ``block=1`` (the default): turns example by example, so each call comes after other methods'
    work, as a generator's call comes after decoding and other transforms in a data pipeline.  A
    larger ``block`` runs each method on ``block`` examples in a row: a tight loop, its code and data
    warm in the caches (``--block``; docs/performance.md, *Example by example or in a row*, measures
    the difference).
    """
    n = len(images)
    pairs = [(images[i % n], images[(i + 1 + i // n) % n]) for i in range(examples)]
    rngs = {name: np.random.default_rng(seed) for name in fns}
    for name, fn in fns.items():  # warm-up (JIT, caches)
        for d, s in pairs[:3]:
            fn(d, s, rngs[name])
    times = {name: [] for name in fns}
    names = list(fns)
    order = np.random.default_rng(seed + 1)
    for start in range(0, examples, block):
        for name in order.permutation(names):
            fn = fns[name]
            for d, s in pairs[start:start + block]:
                t0 = time.perf_counter()
                fn(d, s, rngs[name])
                times[name].append(time.perf_counter() - t0)
    return {
        name: {"ms_mean": 1e3 * float(np.mean(t)), "ms_median": 1e3 * float(np.median(t)), "examples_per_s": 1.0 / float(np.mean(t))}
        for name, t in times.items()
    }


def load_volumes(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two frames of nibabel's real 24x96x128 brain MRI, resampled (linear) to size^3, int16."""
    from scipy import ndimage

    try:
        import nibabel.testing

        from nsa_augment.io import load_volume

        path = str(Path(nibabel.testing.data_path) / "example4d.nii.gz")
        frames = [load_volume(path, frame=f).astype(np.float32) for f in (0, 1)]
    except ImportError:  # a smooth random volume keeps the benchmark running without nibabel
        rng = np.random.default_rng(0)
        frames = [ndimage.gaussian_filter(rng.normal(500, 200, (24, 96, 128)), 3) for _ in range(2)]
    return tuple(np.round(ndimage.zoom(f, [size / n for n in f.shape], order=1)).astype(np.int16) for f in frames)


def volume_rows(sizes, examples: int, solver_sizes) -> list[dict]:
    rows = []
    for size in sizes:
        a, b = load_volumes(size)
        rng = np.random.default_rng(0)
        synthesize_volume(a, b, "medical/brain-mri", rng)  # warm-up (JIT)
        times, patches = [], 0
        for i in range(examples):
            d, s = (a, b) if i % 2 == 0 else (b, a)
            t0 = time.perf_counter()
            _, _, plan = synthesize_volume(d, s, "medical/brain-mri", rng)
            times.append(time.perf_counter() - t0)
            patches += len(plan.patches)
        row = {"size": f"{size}^3", "method": "nsa3d:brain-mri", "ms_mean": 1e3 * float(np.mean(times)),
               "ms_median": 1e3 * float(np.median(times)), "examples_per_s": 1.0 / float(np.mean(times)),
               "patches_per_example": patches / examples}
        rows.append(row)
        print(f"{row['size']:>7} {row['method']:<20} {row['ms_mean']:10.1f} ms/example, {row['examples_per_s']:6.1f} "
              f"examples/s, {row['patches_per_example']:.1f} patches each", flush=True)
    a, b = load_volumes(max(solver_sizes) + 8)
    for n in solver_sizes:
        zz, yy, xx = np.indices((n, n, n))
        c = (n - 1) / 2
        masks = {"box": np.ones((n, n, n), bool),
                 "ellipsoid": ((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2) < (0.45 * n) ** 2}
        src = np.ascontiguousarray(b[:n, :n, :n])
        for name, mask in masks.items():
            kw = dict(offset=(4, 4, 4), gradients="mixed", factor=0.5)
            poisson_blend_volume(a, src, mask, **kw)  # warm-up
            t0 = time.perf_counter()
            ours = poisson_blend_volume(a, src, mask, **kw)
            t1 = time.perf_counter()
            ref = poisson_blend_volume_reference(a, src, mask, **kw)
            t2 = time.perf_counter()
            row = {"size": f"{n}^3", "method": f"solver3d:{name}", "ours_ms": 1e3 * (t1 - t0),
                   "sparse_ms": 1e3 * (t2 - t1), "speedup_vs_sparse": (t2 - t1) / (t1 - t0),
                   "max_diff_levels": float(np.abs(ours.reshape(ref.shape) - ref).max())}
            rows.append(row)
            print(f"{row['size']:>7} {row['method']:<20} ours {row['ours_ms']:8.1f} ms, sparse direct "
                  f"{row['sparse_ms']:8.1f} ms: {row['speedup_vs_sparse']:6.1f}x, max difference "
                  f"{row['max_diff_levels']:.2f} levels (int16, rounded)", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="128 px, few examples (smoke test)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of normal images")
    ap.add_argument("--examples", type=int, default=300, help="examples per method and size")
    ap.add_argument("--no-peers", action="store_true", help="only NSA and the reference transcription")
    ap.add_argument("--no-volumes", action="store_true", help="skip the 3-D rows")
    ap.add_argument("--block", type=int, default=1, metavar="N",
                    help="methods take turns every N examples (default 1: example by example; e.g. 25: each "
                         "method runs 25 in a row, warm)")
    ap.add_argument("--authors-code", type=Path, metavar="DIR",
                    help="a checkout of hmsch/natural-synthetic-anomalies: adds the authors' own generator")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error(f"--block must be at least 1, got {args.block}")
    sizes, examples = ([128], 10) if args.quick else ([256, 512], args.examples)

    cfgs = configs()
    fns = methods(cfgs, peers=not args.no_peers, authors_code=args.authors_code)
    env = thread_environment()
    print(f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, images from "
          f"{args.data if args.data.is_dir() else 'scikit-image'}; threads: {env}")
    latency = first_call_latency(SYNTHESIS, "synthesis")
    latency["reference"] = first_call_latency(REFERENCE, "reference generator")["cold_cache"]
    latency["numba_floor"] = first_call_latency(NUMBA_FLOOR, "one-line Numba kernel (Numba's floor)")
    print(f"{'size':>5} {'method':<20} {'ms/example':>10} {'median ms':>9} {'examples/s':>10} {'vs reference':>12} {'vs nsa:carpet':>13} {'vs nsa:same':>11}")
    rows = []
    for size in sizes:
        images = load_images(size, 16, args.data)
        res = run(images, fns, examples, block=args.block)
        nsa_ms = res["nsa:carpet"]["ms_mean"]
        for name, r in res.items():
            family, key = name.split(":")
            ref = res.get(f"reference:{key}")
            speedup = ref["ms_mean"] / r["ms_mean"] if ref is not None else None
            relative = nsa_ms / r["ms_mean"]  # > 1: faster than NSA (carpet)
            same = res.get(f"nsa:{key}")
            vs_same = same["ms_mean"] / r["ms_mean"] if same is not None and family == "transform" else None
            rows.append({"size": size, "method": name, **r, "speedup_vs_reference": speedup, "speed_vs_nsa_carpet": relative,
                         "speed_vs_functional": vs_same})
            ref_col = f"{speedup:11.1f}x" if speedup is not None else f"{'-':>12}"
            same_col = f"{vs_same:10.2f}x" if vs_same is not None else f"{'-':>11}"
            print(f"{size:>5} {name:<20} {r['ms_mean']:10.2f} {r['ms_median']:9.2f} {r['examples_per_s']:10.1f} {ref_col} {relative:12.2f}x {same_col}", flush=True)
    volumes = []
    if not args.no_volumes:
        volumes = volume_rows([32] if args.quick else [64, 128], 3 if args.quick else 20,
                              [12] if args.quick else [24, 40])
    if args.json:
        write_text(args.json, json.dumps({"machine": platform.platform(), "threads": env, "examples": examples,
                                          "block": args.block,
                                          "first_call": latency, "rows": rows, "volumes": volumes}, indent=2))
    return rows


if __name__ == "__main__":
    main()
