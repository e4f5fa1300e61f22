"""Synthesis as training runs it: a real DataLoader with 0, 1, 2, ... workers, default environment.

Run:  python benchmarks/bench_pipeline.py [--json results.json] [--quick] [--workers 0 1 2] [--size 256]

A ``torch.utils.data.DataLoader`` over :class:`nsa_augment.torch.SyntheticAnomalyDataset` with real
images (../shared/data/magnetic_tile/train/good, resized), batches of 16, the paper's texture
pipeline (resize, flip, random crop, NSA with the ``mvtec/carpet`` preset — mixed gradients, up to
4 patches, logistic labels —, ImageNet normalisation, to tensor), and the same without the
normalisation ("nsa, uint8 out": what ``nsa-augment train`` hands out of its workers for 8-bit data,
normalising on the device).  For each number of workers: examples/s after the workers have started
(the first batch is not timed) and the scaling against the same pipeline in the main process.
Every measurement is one loader pass over all its batches (:class:`nsa_augment.torch.RunSampler`,
as training iterates): a new pass per epoch would fork the workers again every few batches
(64 images are 4 batches) and time their start-up.  The same loader with the reference generator's work
(``reference_nsa.py``, in place of our NSA) runs in the same process, worker count by worker count,
and so does planning alone (:class:`nsa_augment.torch.PlannedAnomalyDataset`, what stays in the
workers with ``--synthesis gpu``), and datasets that only hand out ready tensors of the same shapes,
float32 and uint8 images ("transfer only": the DataLoader's own cost of moving a batch out of a worker).

Nothing about threads is set: no thread variables, OpenCV's and BLAS's default pools — the
environment a user's training script has.  Workers are forked (Linux's default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from environment import thread_environment  # noqa: E402
from images import load_images  # noqa: E402
from reference_nsa import reference_nsa  # noqa: E402

from nsa_augment import NaturalSyntheticAnomaly, presets  # noqa: E402
from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)
from nsa_augment.torch import (EpochSampler, PlannedAnomalyDataset, RunSampler, SyntheticAnomalyDataset,  # noqa: E402
                               collate_plans, worker_init_fn)

PRESET = "mvtec/carpet"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def geometry(size: int) -> list:
    big = round(size * 264 / 256)
    return [A.Resize(big, big), A.VerticalFlip(p=0.5), A.RandomCrop(size, size)]


class ReferenceDataset(SyntheticAnomalyDataset):
    """The same items with the reference generator's work (``reference_nsa``) in place of our NSA."""

    def __init__(self, images, size: int, config):
        super().__init__(images, A.Compose(geometry(size)), source_transform=A.Compose(geometry(size)))
        self.config = config
        self.finish = A.Compose([A.Normalize(MEAN, STD), ToTensorV2()])

    def __getitem__(self, key):
        image, source, _ = self._pair(key)
        image = self.transform(image=image)["image"]
        image, label = reference_nsa(np.ascontiguousarray(image), np.ascontiguousarray(source), self.config, self.rng)
        return self.finish(image=image)["image"], torch.from_numpy(label), torch.tensor(float(label.max() > 0))


class TransferOnly(torch.utils.data.Dataset):
    """Ready tensors of the pipeline's shapes: what moving a batch out of a worker costs with no work at all."""

    def __init__(self, size: int, count: int, dtype=torch.float32):
        self.count = count
        self.item = (torch.zeros(3, size, size, dtype=dtype), torch.zeros(size, size), torch.tensor(1.0))

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return tuple(t.clone() for t in self.item)


def datasets(images, size: int) -> dict[str, object]:
    cfg = presets.get(PRESET)
    anomaly = [*geometry(size), NaturalSyntheticAnomaly.from_preset(PRESET, p=1.0)]
    ours = SyntheticAnomalyDataset(images, A.Compose([*anomaly, A.Normalize(MEAN, STD), ToTensorV2()]),
                                   source_transform=A.Compose(geometry(size)))
    raw = SyntheticAnomalyDataset(images, A.Compose([*anomaly, ToTensorV2()]), source_transform=A.Compose(geometry(size)))
    planning = PlannedAnomalyDataset(images, cfg, transform=A.Compose(geometry(size)),
                                     source_transform=A.Compose(geometry(size)))
    return {"nsa": ours, "nsa, uint8 out": raw, "reference": ReferenceDataset(images, size, cfg),
            "nsa-planning (--synthesis gpu)": planning, "transfer only": TransferOnly(size, len(images)),
            "transfer only, uint8": TransferOnly(size, len(images), torch.uint8)}


def rate(dataset, workers: int, batches: int, batch_size: int) -> float:
    """Examples/s of a DataLoader, not counting the first batch (worker start-up): one pass, epochs back to back."""
    sampler = RunSampler(EpochSampler(len(dataset), seed=0), batch_size, batches + 1, 0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                        worker_init_fn=worker_init_fn,
                        collate_fn=collate_plans if isinstance(dataset, PlannedAnomalyDataset) else None)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    seen = sum(len(batch[0]) for batch in it)
    return seen / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--quick", action="store_true", help="96 px, 0 and 1 workers, a few batches (smoke test)")
    ap.add_argument("--workers", type=int, nargs="+", help="worker counts (default: 0 1 2 ... up to the CPU count)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20, help="timed batches of 16 per measurement")
    args = ap.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = args.workers or sorted({0, 1, 2, cpus} | ({4} if cpus >= 4 else set()))
    size, batches = args.size, args.batches
    if args.quick:
        workers, size, batches = [0, 1], 96, 3
    images = load_images(size, 64)
    sets = datasets(images, size)
    env = thread_environment()
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, opencv "
          f"{cv2.__version__}, {cpus} CPUs, {len(images)} images at {size} px, preset {PRESET}")
    print(f"threads (default environment): {env}")
    print(f"{'pipeline':<32} {'workers':>7} {'examples/s':>11} {'scaling':>8} {'vs reference':>12}")
    rows = []
    single: dict[str, float] = {}
    for w in workers:
        measured = {}
        for name, ds in sets.items():  # the same worker count for every pipeline, back to back
            measured[name] = rate(ds, w, batches, 16)
            single.setdefault(name, measured[name]) if w == 0 else None
        for name, r in measured.items():
            base = single.get(name)
            scaling = r / base if base else None
            vs_ref = r / measured["reference"] if name != "reference" else None
            rows.append({"pipeline": name, "workers": w, "examples_per_s": r, "scaling": scaling, "vs_reference": vs_ref})
            print(f"{name:<32} {w:>7} {r:11.1f} " + (f"{scaling:7.2f}x" if scaling else f"{'-':>8}") + " "
                  + (f"{vs_ref:11.1f}x" if vs_ref else f"{'-':>12}"), flush=True)
    result = {"machine": platform.platform(), "cpus": cpus, "size": size, "preset": PRESET, "threads": env, "rows": rows}
    if args.json:
        write_text(args.json, json.dumps(result, indent=2))
    return rows


if __name__ == "__main__":
    main()
