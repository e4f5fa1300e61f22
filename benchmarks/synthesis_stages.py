"""Where a synthesis spends its time, and the floor its pixel kernels set, beside the reference in one run.

Run:  python benchmarks/synthesis_stages.py [--json results.json] [--quick] [--examples N] [--data DIR] [--block N]

The issue that set "25x the reference generator" asked to profile first and to say what the floor
is.  This script measures both on real images (``../shared/data/magnetic_tile``), in the default
environment, with the presets the target names (``mvtec/carpet`` and ``mvtec/hazelnut``: logistic
labels), at 256 and 512 px.  Example by example, in a shuffled order (``--block N``: every N
examples, each run warm for N in a row, as in ``bench_synthesis.py``), it runs

* ``reference``: the reference generator's work (``reference_nsa.py``);
* ``nsa``: :func:`nsa_augment.synthesize`, untouched (the headline time and ratio);
* ``nsa, timed in place``: the same calls with the package's pixel kernels and stages wrapped in
  timers (a few microseconds of instrumentation per call, reported as the difference to ``nsa``).

Stages (inclusive wall time): planning (``_plan``: sampling and the object masks it needs), the
patches' object masks at render time, patch extraction (resampling), the Poisson blends, the
label, and the rest of ``synthesize`` (checks, copies, the region map).  **Kernels**: the calls
that do the pixel work and nothing else — the Numba kernels (resampling, right-hand side,
tridiagonal solves, writing the solution, the change map, the disk median, the object masks'
threshold, the binary medians) and the box solver's transforms (pocketfft's sine/cosine transforms
or one BLAS product with a cached eigenbasis).  Their sum is the
*kernel floor*: what an example would cost if everything between the kernels (Python, NumPy
slicing and allocation, argument checks) took no time at all, with today's kernels.  The
reference's time over the floor is the largest ratio those kernels allow; ``25x needs`` is the
reference's time / 25.

Every kernel (one of its variants) and stage must be called at least once in a run: if a
refactoring moves a kernel so that a wrapper no longer sees it, the script stops with the name
instead of printing a floor that leaves the kernel out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import thread_environment  # noqa: E402
from images import DEFAULT_DATA, load_images  # noqa: E402
from reference_nsa import reference_nsa  # noqa: E402

from nsa_augment import presets, synthesize  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)
from nsa_augment.methods.nsa import blending, labels, objects, synthesis  # noqa: E402
from nsa_augment.poisson import blend, box_solver, kernels  # noqa: E402

#: (stage, module, name): wrapped where the caller looks the name up.
STAGES = (
    ("planning", synthesis, "_plan"),
    ("object masks (render)", synthesis, "_patch_region"),
    ("extraction", synthesis, "extract_patch"),
    ("blend", synthesis, "blend_patch"),
    ("label", synthesis, "_label"),
)
#: (kernel, module, names): the pixel work; a kernel with variants (8-bit images look values up)
#: lists them all.  The box solver's inverse transforms are timed through the function
#: ``_forward`` returns (see ``_timed_forward``).
KERNELS = (
    ("resampling", blending, ("_resample_2d", "_fill_positions")),
    ("right-hand side", kernels, ("assemble_rhs_box",)),
    ("tridiagonal solves", box_solver, ("solve_tridiagonal_modes",)),
    ("writing the solution", kernels, ("write_solution", "write_box")),
    ("change map", labels, ("_measure_change", "_measure_change_8bit")),
    ("binary median (label)", labels, ("binary_median",)),
    ("disk median", labels, ("median_footprint",)),
    ("object threshold", objects, ("_threshold_channel_mean", "_vote_by_channel_sum")),
    ("binary median (objects)", objects, ("binary_median",)),
)
TRANSFORMS = "transforms (forward + inverse)"
PRESETS = ("mvtec/carpet", "mvtec/hazelnut")


class Timers:
    """Accumulated wall time and call counts per label (the wrappers are installed only around the timed run)."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)

    def wrap(self, label, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1

        return timed


def _timed_forward(timers: Timers, forward):
    """Wrap ``box_solver._forward`` so that the forward transform and the inverse it returns are timed."""

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        spec, lam, inverse = forward(*args, **kwargs)
        timers.seconds[TRANSFORMS] += time.perf_counter() - t0
        timers.calls[TRANSFORMS] += 1
        return spec, lam, timers.wrap(TRANSFORMS + " (inverse)", inverse)

    return timed


@contextmanager
def instrumented(timers: Timers):
    """Install the wrappers for the duration (the package is restored afterwards)."""
    saved = []
    for label, module, names in [(label, module, (name,)) for label, module, name in STAGES] + list(KERNELS):
        for name in names:
            if not hasattr(module, name):
                raise SystemExit(f"synthesis_stages.py: {module.__name__} has no {name} any more; update STAGES/KERNELS")
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, timers.wrap(label, getattr(module, name)))
    saved.append((box_solver, "_forward", box_solver._forward))
    box_solver._forward = _timed_forward(timers, box_solver._forward)
    try:
        yield
    finally:
        for module, name, fn in reversed(saved):
            setattr(module, name, fn)


def measure(images, preset: str, examples: int, seed: int = 0, block: int = 1) -> dict:
    cfg = presets.get(preset)
    n = len(images)
    pairs = [(images[i % n], images[(i + 1 + i // n) % n]) for i in range(examples)]
    timers = Timers()
    runs = {
        "reference": lambda d, s, rng: reference_nsa(d, s, cfg, rng),
        "nsa": lambda d, s, rng: synthesize(d, s, cfg, rng),
        "nsa, timed in place": lambda d, s, rng: synthesize(d, s, cfg, rng),
    }
    rngs = {name: np.random.default_rng(seed) for name in runs}  # the two nsa runs draw the same plans
    times = {name: 0.0 for name in runs}
    for d, s in pairs[:3]:  # warm-up (JIT or cache load, eigenbasis cache)
        for name, fn in runs.items():
            fn(d, s, np.random.default_rng(seed + 99))
    order = np.random.default_rng(seed + 1)
    for start in range(0, examples, block):  # turns every ``block`` examples (bench_synthesis.py's ``--block``)
        for name in order.permutation(list(runs)):
            timed = name == "nsa, timed in place"
            for d, s in pairs[start:start + block]:
                with instrumented(timers) if timed else nullcontext():  # the other runs call the package untouched
                    t0 = time.perf_counter()
                    runs[name](d, s, rngs[name])
                    times[name] += time.perf_counter() - t0
    missing = [label for label, _, _ in KERNELS if timers.calls[label] == 0 and
               not (label.startswith(("object", "binary median (objects)")) and cfg.object_masks is None)]
    missing += [label for label, _, _ in STAGES if timers.calls[label] == 0 and
                not (label == "object masks (render)" and cfg.object_masks is None)]
    if timers.calls[TRANSFORMS] == 0 or timers.calls[TRANSFORMS] != timers.calls[TRANSFORMS + " (inverse)"]:
        missing.append(TRANSFORMS)
    if missing:
        raise SystemExit(f"synthesis_stages.py: no calls seen for {missing}; the package moved a kernel "
                         "(update STAGES/KERNELS)")
    ms = {name: 1e3 * t / examples for name, t in times.items()}
    per = {label: 1e3 * t / examples for label, t in timers.seconds.items()}
    transforms = per.pop(TRANSFORMS, 0.0) + per.pop(TRANSFORMS + " (inverse)", 0.0)
    stages = {label: per.get(label, 0.0) for label, _, _ in STAGES}
    stages["rest of synthesize"] = ms["nsa, timed in place"] - sum(stages.values())
    kernel_ms = {label: per.get(label, 0.0) for label, _, _ in KERNELS}
    kernel_ms[TRANSFORMS] = transforms
    floor = sum(kernel_ms.values())
    return {
        "preset": preset, "examples": examples, "reference_ms": ms["reference"], "nsa_ms": ms["nsa"],
        "instrumented_ms": ms["nsa, timed in place"], "speedup": ms["reference"] / ms["nsa"],
        "stages_ms": stages, "kernels_ms": kernel_ms, "kernel_floor_ms": floor,
        "between_kernels_ms": ms["nsa, timed in place"] - floor, "speedup_at_floor": ms["reference"] / floor,
        "needed_for_25x_ms": ms["reference"] / 25.0,
    }


def report(size: int, r: dict) -> None:
    total = r["instrumented_ms"]
    print(f"\n{size} px {r['preset']}: reference {r['reference_ms']:.2f} ms, nsa {r['nsa_ms']:.2f} ms "
          f"({r['speedup']:.1f}x); timed in place {total:.2f} ms (instrumentation "
          f"{total - r['nsa_ms']:+.2f} ms)")
    print("  stage                             ms   share")
    for label, v in r["stages_ms"].items():
        print(f"  {label:<28} {v:8.3f} {v / total:6.1%}")
    print("  kernel (pixel work)               ms   share")
    for label, v in sorted(r["kernels_ms"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<28} {v:8.3f} {v / total:6.1%}")
    print(f"  kernel floor {r['kernel_floor_ms']:.3f} ms ({r['kernel_floor_ms'] / total:.0%}), between the kernels "
          f"{r['between_kernels_ms']:.3f} ms; the reference / the floor: {r['speedup_at_floor']:.1f}x; "
          f"25x needs {r['needed_for_25x_ms']:.2f} ms per example", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="128 px, 10 examples (smoke test)")
    ap.add_argument("--examples", type=int, default=200, help="examples per preset and size")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of normal images")
    ap.add_argument("--block", type=int, default=1, metavar="N",
                    help="the runs take turns every N examples (default 1: example by example, each call after "
                         "the others' work; e.g. 25: each runs 25 in a row, warm)")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error(f"--block must be at least 1, got {args.block}")
    sizes, examples = ([128], 10) if args.quick else ([256, 512], args.examples)
    env = thread_environment()
    print(f"python {platform.python_version()}, numpy {np.__version__}; images from "
          f"{args.data if args.data.is_dir() else 'scikit-image'}; threads: {env}")
    results = []
    for size in sizes:
        images = load_images(size, 16, args.data)
        for preset in PRESETS:
            r = measure(images, preset, examples, block=args.block)
            report(size, r)
            results.append({"size": size, **r})
    if args.json:
        write_text(args.json, json.dumps({"machine": platform.platform(), "threads": env, "block": args.block,
                                          "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
