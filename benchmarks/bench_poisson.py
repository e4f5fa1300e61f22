"""Poisson blending: nsa_augment.poisson_blend against cv2.seamlessClone, side by side.

Run:  python benchmarks/bench_poisson.py [--json results.json] [--quick]

Both solvers blend the same real photographs (scikit-image's astronaut into
coffee), 3-channel uint8, single thread, after warm-up.  Each repetition times
ours and OpenCV's back to back so that machine noise hits both alike; the table
reports medians and their ratio.  ``err`` is the max abs difference (0..255
scale) of our float32 result from an exact sparse direct solve of the same
discrete system (scipy.sparse.linalg.spsolve); ``err8`` is the same for the
rounded uint8 output (rounding alone contributes up to 0.5).

Also: our solver alone on elliptical and object-cut (silhouette) masks, and the
first-call latency (import + JIT or cache load) in fresh processes with a cold
and a warm Numba cache.
"""

from __future__ import annotations

import os

# Single thread everywhere, before numpy/OpenCV load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_call import BLEND, first_call_latency  # noqa: E402

from nsa_augment import poisson_blend, poisson_blend_reference  # noqa: E402

cv2.setNumThreads(1)


def load_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    dst = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    src = cv2.resize(data.coffee(), (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(dst), np.ascontiguousarray(src)


def object_mask(p: int) -> np.ndarray:
    from skimage import data

    horse = ~data.horse()  # True on the silhouette
    return cv2.resize(horse.astype(np.uint8), (p, p), interpolation=cv2.INTER_NEAREST).astype(bool)


def ellipse_mask(p: int) -> np.ndarray:
    yy, xx = np.mgrid[:p, :p]
    return ((yy - (p - 1) / 2) / (p / 2)) ** 2 + ((xx - (p - 1) / 2) / (p / 2 * 0.7)) ** 2 < 1


def interleaved(funcs, min_reps: int, min_seconds: float) -> list[float]:
    """Median seconds of each function, timed in alternation."""
    for f in funcs:
        f()
    times = [[] for _ in funcs]
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        for f, t in zip(funcs, times):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        reps += 1
    return [float(np.median(t)) for t in times]


def errors(dst, patch, mask, offset, gradients) -> tuple[float, float]:
    exact = poisson_blend_reference(dst, patch, mask, offset=offset, gradients=gradients)
    ours_f = poisson_blend(dst.astype(np.float32), patch.astype(np.float32), mask, offset=offset, gradients=gradients)
    ours_8 = poisson_blend(dst, patch, mask, offset=offset, gradients=gradients)
    inside = np.zeros(dst.shape[:2], bool)
    h, w = mask.shape
    inside[offset[0] : offset[0] + h, offset[1] : offset[1] + w] = mask
    valid = inside[..., None] & (exact >= 0) & (exact <= 255)  # uint8 clipping is not an error
    return float(np.abs(ours_f - exact).max()), float(np.abs(ours_8 - exact)[valid].max())


def bench_rectangles(image_sizes, patch_sizes, min_reps, min_seconds, check_error=True):
    rows = []
    for size in image_sizes:
        dst, src = load_images(size)
        for p in patch_sizes:
            if p + 2 >= size:
                continue
            y0 = x0 = (size - p) // 2
            cv_mask = np.zeros((size, size), np.uint8)
            cv_mask[y0 : y0 + p, x0 : x0 + p] = 255
            center = (x0 + p // 2, y0 + p // 2)
            # Same rectangle for us; the source comes with a 1-px margin so the
            # guidance uses source gradients right up to the boundary, as OpenCV's does.
            patch = src[y0 - 1 : y0 + p + 1, x0 - 1 : x0 + p + 1]
            mask = np.zeros((p + 2, p + 2), bool)
            mask[1:-1, 1:-1] = True
            offset = (y0 - 1, x0 - 1)
            for gradients, flag in (("normal", cv2.NORMAL_CLONE), ("mixed", cv2.MIXED_CLONE)):
                ours, theirs = interleaved(
                    [
                        lambda: poisson_blend(dst, patch, mask, offset=offset, gradients=gradients),
                        lambda: cv2.seamlessClone(src, dst, cv_mask, center, flag),
                    ],
                    min_reps,
                    min_seconds,
                )
                err, err8 = errors(dst, patch, mask, offset, gradients) if check_error else (float("nan"),) * 2
                rows.append(
                    dict(image=size, patch=p, mask="rectangle", gradients=gradients, ours_ms=ours * 1e3,
                         seamlessclone_ms=theirs * 1e3, speedup=theirs / ours, err=err, err8=err8)
                )
                print_row(rows[-1])
    return rows


def bench_shapes(size, patch_sizes, min_reps, min_seconds, check_error=True):
    rows = []
    dst, src = load_images(size)
    for p in patch_sizes:
        y0 = x0 = (size - p) // 2
        for name, mask in (("ellipse", ellipse_mask(p)), ("object-cut", object_mask(p))):
            patch = src[y0 : y0 + p, x0 : x0 + p]
            (ours,) = interleaved(
                [lambda: poisson_blend(dst, patch, mask, offset=(y0, x0), gradients="mixed")], min_reps, min_seconds
            )
            err, err8 = errors(dst, patch, mask, (y0, x0), "mixed") if check_error else (float("nan"),) * 2
            rows.append(dict(image=size, patch=p, mask=name, gradients="mixed", ours_ms=ours * 1e3,
                             seamlessclone_ms=None, speedup=None, err=err, err8=err8))
            print_row(rows[-1])
    return rows


def print_header():
    print(f"{'image':>5} {'patch':>5} {'mask':<10} {'grad':<6} {'ours ms':>8} {'cv2 ms':>8} {'speedup':>7} {'err':>8} {'err8':>6}")


def print_row(r):
    cv = f"{r['seamlessclone_ms']:8.3f}" if r["seamlessclone_ms"] is not None else f"{'-':>8}"
    sp = f"{r['speedup']:6.1f}x" if r["speedup"] is not None else f"{'-':>7}"
    print(f"{r['image']:>5} {r['patch']:>5} {r['mask']:<10} {r['gradients']:<6} {r['ours_ms']:8.3f} {cv} {sp} {r['err']:8.4f} {r['err8']:6.3f}", flush=True)


def thread_settings() -> dict:
    info = {"cv2_threads": cv2.getNumThreads(), **{v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{"api": p["internal_api"], "threads": p["num_threads"]} for p in threadpool_info()]
    except ImportError:
        pass
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions (smoke test)")
    args = ap.parse_args(argv)

    if args.quick:
        image_sizes, patch_sizes, reps, secs, shapes = [96], [32, 64], 3, 0.0, [32]
    else:
        image_sizes, patch_sizes, reps, secs, shapes = [256, 1024], [32, 64, 128, 256], 25, 1.0, [64, 128, 256]

    threads = thread_settings()
    print(f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"threads: {threads}")
    latency = first_call_latency(BLEND, "blend")
    print_header()
    rows = bench_rectangles(image_sizes, patch_sizes, reps, secs)
    rows += bench_shapes(max(image_sizes), shapes, reps, secs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "threads": threads,
                       "first_call": latency, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
