"""Synthetic-anomaly throughput: examples per second per core, side by side in one run.

Run:  python benchmarks/bench_synthesis.py [--json results.json] [--quick] [--data DIR]

Real images (../shared/data/magnetic_tile/train/good by default, converted to
RGB and resized to 256 and 512 px; scikit-image photographs when the folder is
absent), single thread, after warm-up.  Every method synthesises from the same
(destination, source) pairs, and the methods take turns example by example, so
that machine noise hits them alike.  Methods:

* ``nsa:<preset>`` — ours, with the paper's class presets: carpet (mixed
  gradients, up to 4 patches, logistic labels), hazelnut (object masks,
  logistic labels) and cable (binary labels, no object masks);
* ``reference:<preset>`` — a transcription of the reference generator's work
  (``reference_nsa.py``: full-image seamlessClone per patch, whole-image medians);
* ``transform:<preset>`` — the same presets through the Albumentations transform
  (``A.Compose([NaturalSyntheticAnomaly.from_preset(...)])``, source under
  ``nsa_source``): plan sampled in the parameter hook, rendered in ``apply``; its
  ratio to ``nsa:<preset>`` is the transform's overhead;
* the peer methods of ``nsa_augment.methods`` (CutPaste, CutPaste-Scar, the NSA
  paper's CutPaste variant, FPI, PII, DRAEM-style), with the carpet preset's
  patch geometry where they use NSA's sampler.  ``--no-peers`` skips them.
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
from first_call import SYNTHESIS, first_call_latency  # noqa: E402
from reference_nsa import reference_nsa  # noqa: E402

from nsa_augment import methods as nsa_methods  # noqa: E402
from nsa_augment import presets, synthesize  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile" / "train" / "good"


def thread_environment() -> dict:
    """What the run's thread settings were: the variables (if any were set) and each pool's size."""
    import os

    from threadpoolctl import threadpool_info

    variables = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "NUMBA_NUM_THREADS") if k in os.environ}
    pools = {f"{i['internal_api']}": i["num_threads"] for i in threadpool_info()}
    return {"variables": variables or "none set (default environment)", "pools": pools,
            "opencv": cv2.getNumThreads(), "cpus": os.cpu_count()}


def load_images(folder: Path, size: int, count: int) -> list[np.ndarray]:
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count] if folder.is_dir() else []
    images = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)  # grayscale files come back as 3-channel
        images.append(cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA))
    if not images:
        from skimage import data

        for img in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
            images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return images


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


def methods(cfgs, peers: bool = True) -> dict[str, callable]:
    """name -> fn(destination, source, rng) returning (image, label)."""
    out = {}
    for key, cfg in cfgs.items():
        out[f"nsa:{key}"] = lambda d, s, rng, cfg=cfg: synthesize(d, s, cfg, rng)[:2]
        out[f"reference:{key}"] = lambda d, s, rng, cfg=cfg: reference_nsa(d, s, cfg, rng)
        out[f"transform:{key}"] = _transform(cfg)
    if peers:
        for name in PEERS:
            gen = nsa_methods.generator(name, "mvtec/carpet")
            out[f"peer:{name}"] = lambda d, s, rng, gen=gen: gen(d, s, rng)[:2]
    return out


def run(images, fns, examples: int, seed: int = 0) -> dict[str, dict]:
    n = len(images)
    pairs = [(images[i % n], images[(i + 1 + i // n) % n]) for i in range(examples)]
    rngs = {name: np.random.default_rng(seed) for name in fns}
    for name, fn in fns.items():  # warm-up (JIT, caches)
        for d, s in pairs[:3]:
            fn(d, s, rngs[name])
    times = {name: [] for name in fns}
    for d, s in pairs:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(d, s, rngs[name])
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"ms_mean": 1e3 * float(np.mean(t)), "ms_median": 1e3 * float(np.median(t)), "examples_per_s": 1.0 / float(np.mean(t))}
        for name, t in times.items()
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="128 px, few examples (smoke test)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of normal images")
    ap.add_argument("--examples", type=int, default=300, help="examples per method and size")
    ap.add_argument("--no-peers", action="store_true", help="only NSA and the reference transcription")
    args = ap.parse_args(argv)
    sizes, examples = ([128], 10) if args.quick else ([256, 512], args.examples)

    cfgs = configs()
    fns = methods(cfgs, peers=not args.no_peers)
    env = thread_environment()
    print(f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, images from "
          f"{args.data if args.data.is_dir() else 'scikit-image'}; threads: {env}")
    latency = first_call_latency(SYNTHESIS, "synthesis")
    print(f"{'size':>5} {'method':<20} {'ms/example':>10} {'median ms':>9} {'examples/s':>10} {'vs reference':>12} {'vs nsa:carpet':>13} {'vs nsa:same':>11}")
    rows = []
    for size in sizes:
        images = load_images(args.data, size, 16)
        res = run(images, fns, examples)
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
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.platform(), "threads": env, "examples": examples,
                                               "first_call": latency, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
