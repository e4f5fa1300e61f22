"""The batched PyTorch renderer against the NumPy renderer, side by side in one run.

Run:  python benchmarks/bench_batch.py [--json results.json] [--quick] [--device cpu|cuda]
                                       [--batches 16 64 256] [--sizes 256 512] [--train-step]

Real images (../shared/data/magnetic_tile/train/good, resized; scikit-image photographs when the
folder is absent), uint8 RGB, the ``mvtec/carpet`` preset (mixed gradients, up to 4 patches,
logistic labels: the most expensive) and ``mvtec/hazelnut`` (object masks).  For each size and
batch, the same plans (drawn once with :func:`nsa_augment.plan_anomaly`) are rendered

* by ``numpy``: :func:`nsa_augment.render_anomaly`, example by example, in this process;
* by ``torch``: :func:`nsa_augment.torch.render_batch` on ``--device``; on the CPU once with one
  torch thread and once with all of them (``torch.get_num_threads()`` by default).

Reported: examples/s (medians of repetitions after a warm-up; CUDA timings synchronised) and the
ratio to the NumPy path; planning's own examples/s (the part that stays in DataLoader workers).
With ``--train-step`` also the training step's images/s of the paper's network (forward and
backward, bf16 autocast on CUDA, as ``nsa-augment train`` runs it) at the same size and batch: the
rate the renderer has to beat.  With ``--profile`` also one profiled batch of the torch renderer
per size, preset and batch (``torch.profiler``): where its time goes — the device's busy time (CUDA
kernels; on the CPU the operators' own time), the operators issued, the host's waits for the device
(synchronisations, blocking copies) and the top operators.  No thread variables are set by this
script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import thread_environment  # noqa: E402
from images import load_images  # noqa: E402

from nsa_augment import plan_anomaly, render_anomaly  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)
from nsa_augment.torch import render_batch  # noqa: E402

PRESETS = ("mvtec/carpet", "mvtec/hazelnut")


def median_time(fn, reps: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_step_rate(size: int, batch: int, device: torch.device, reps: int) -> float:
    """Images/s of one optimiser step of the paper's network (as nsa-augment train runs it)."""
    from nsa_augment.detection.network import NSANet

    torch.manual_seed(0)
    model = NSANet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.rand(batch, 1, size, size, device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
        else:
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    return batch / median_time(step, reps, sync)


def profile_batch(fn, device: torch.device, sync) -> dict:
    """One profiled call of ``fn`` (after a warm-up): wall ms (the profiler's overhead included), the
    device's busy ms, the number of operators issued, the host's waits for the device, the top operators."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    fn()
    sync()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        t0 = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()

    def own(e):  # microseconds of the event's own work on the device (CUDA) or the CPU
        if cuda:
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        return e.self_cpu_time_total

    top = sorted(events, key=own, reverse=True)[:6]
    # Where the host waits for the device on CUDA: explicit synchronisations, blocking copies, and the
    # operators whose result size or value the host must read (item(), nonzero, truth tests).
    waits = {"cudaMemcpy", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero"}
    return {"wall_ms": wall * 1e3, "busy_ms": sum(own(e) for e in events) / 1e3,
            "operators": int(sum(e.count for e in events if e.key.startswith("aten::"))),
            "sync_points": {e.key: int(e.count) for e in events if e.key in waits or "Synchronize" in e.key},
            "top": [[e.key, own(e) / 1e3, int(e.count)] for e in top]}


def bench(sizes, batches, device, reps, thread_counts, with_train_step, numpy_limit, profile=False) -> list[dict]:
    rows = []
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for size in sizes:
        pool = np.stack(load_images(size, 16))
        for preset in PRESETS:
            for batch in batches:
                rng = np.random.default_rng(batch)
                idx = np.arange(batch) % len(pool)
                dst, src = pool[idx], pool[(idx + 5) % len(pool)]
                t0 = time.perf_counter()
                plans = [plan_anomaly(d, s, preset, rng) for d, s in zip(dst, src)]
                plan_rate = batch / (time.perf_counter() - t0)
                base = dict(size=size, preset=preset, batch=batch, plans_per_s=plan_rate)
                # NumPy: example by example (at most numpy_limit examples timed; the rate is per example).
                k = min(batch, numpy_limit)
                numpy_s = median_time(lambda: [render_anomaly(d, s, preset, p) for d, s, p in
                                               zip(dst[:k], src[:k], plans[:k])], max(1, reps // 2))
                numpy_rate = k / numpy_s
                rows.append({**base, "renderer": "numpy", "device": "cpu", "threads": 1, "examples_per_s": numpy_rate,
                             "vs_numpy": 1.0})
                print_row(rows[-1])
                x = torch.from_numpy(dst).permute(0, 3, 1, 2).contiguous().to(device)
                s = torch.from_numpy(src).permute(0, 3, 1, 2).contiguous().to(device)
                for threads in (thread_counts if device.type == "cpu" else [None]):
                    saved = torch.get_num_threads()
                    if threads is not None:
                        torch.set_num_threads(threads)
                    try:
                        seconds = median_time(lambda: render_batch(x, s, plans, preset), reps, sync)
                    finally:
                        torch.set_num_threads(saved)
                    rate = batch / seconds
                    rows.append({**base, "renderer": "torch", "device": str(device), "threads": threads,
                                 "examples_per_s": rate, "vs_numpy": rate / numpy_rate})
                    print_row(rows[-1])
                if profile:
                    prof = profile_batch(lambda: render_batch(x, s, plans, preset), device, sync)
                    rows.append({**base, "renderer": "torch-profile", "device": str(device), "threads": None,
                                 "examples_per_s": batch / (prof["wall_ms"] / 1e3), "vs_numpy": float("nan"),
                                 "profile": prof})
                    top = "; ".join(f"{k} {ms:.2f} ms x{n}" for k, ms, n in prof["top"][:4])
                    print(f"      profile: {prof['wall_ms']:.1f} ms wall, device busy {prof['busy_ms']:.1f} ms, "
                          f"{prof['operators']} operators, sync points {prof['sync_points'] or 'none'}; top: {top}",
                          flush=True)
                if with_train_step and preset == PRESETS[0]:
                    rate = train_step_rate(size, batch, device, reps)
                    rows.append({**base, "renderer": "train-step", "device": str(device), "threads": None,
                                 "examples_per_s": rate, "vs_numpy": rate / numpy_rate})
                    print_row(rows[-1])
    return rows


def print_row(r):
    threads = "-" if r["threads"] is None else str(r["threads"])
    print(f"{r['size']:>5} {r['preset']:<15} {r['batch']:>5} {r['renderer']:<10} {r['device']:<7} {threads:>7} "
          f"{r['examples_per_s']:12.1f} {r['vs_numpy']:8.2f}x {r['plans_per_s']:10.0f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="one small size and batch (smoke test)")
    ap.add_argument("--device", default="cpu", help="torch device for render_batch (default: cpu)")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-step", action="store_true", help="also time the training step at each size and batch")
    ap.add_argument("--profile", action="store_true", help="also profile one batch of the torch renderer")
    ap.add_argument("--numpy-limit", type=int, default=64,
                    help="time the NumPy path on at most this many examples per batch (its rate is per example)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_batch.py: --device cuda, but torch sees no CUDA GPU")
    sizes, batches, reps = (args.sizes, args.batches, args.reps) if not args.quick else ([96], [8], 2)
    all_threads = torch.get_num_threads()
    thread_counts = sorted({1, all_threads})
    env = thread_environment()
    env["torch_threads"] = all_threads
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"threads (default environment): {env}")
    print(f"{'size':>5} {'preset':<15} {'batch':>5} {'renderer':<10} {'device':<7} {'threads':>7} {'examples/s':>12} "
          f"{'vs numpy':>9} {'plans/s':>10}")
    rows = bench(sizes, batches, device, reps, thread_counts, args.train_step, args.numpy_limit, args.profile)
    result = {"machine": platform.platform(), "cpus": os.cpu_count(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "threads": env,
              "rows": rows}
    if args.json:
        write_text(args.json, json.dumps(result, indent=2))
    return rows


if __name__ == "__main__":
    main()
