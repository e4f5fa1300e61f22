"""What a training run is: its settings, validated, and the command line that fills them (no torch needed).

:class:`TrainSettings` is the "what to do" of a run, kept apart from the doing
(:mod:`nsa_augment.detection.train`) so that ``nsa-augment train --help`` and argument errors work
without PyTorch, and so that a checkpoint can record exactly the settings that shaped its model
(:meth:`TrainSettings.model_settings`): a resumed run with other settings stops with the
differences instead of silently training on (or not at all).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..methods import registry
from ..methods.nsa import presets

DEVICES = ("auto", "cpu", "cuda")
SYNTHESIS = ("cpu", "gpu")
POOLINGS = ("mean", "max", "top1")
KINDS = ("object", "texture")


@dataclass(frozen=True)
class TrainSettings:
    """One training run (see ``nsa-augment train --help`` for each field)."""

    root: Path
    category: str
    out: Path = Path("runs")
    method: str = "nsa"
    preset: str | None = None
    kind: str | None = None
    image_size: int = 256
    batch_size: int = 64
    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-3
    seed: int = 0
    workers: int = min(4, os.cpu_count() or 1)
    device: str = "auto"
    anomaly_p: float | None = None
    eval_every: int = 0
    pooling: str = "mean"
    max_train: int = 0
    max_test: int = 0
    no_resume: bool = False
    profile_data: int = 64
    synthesis: str = "cpu"

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "out", Path(self.out))
        if self.method not in registry.METHODS:
            raise ValueError(f"--method must be one of {', '.join(registry.METHODS)}, got {self.method!r}")
        if self.preset is not None:
            presets.load(self.preset)  # a clear error for an unknown preset or a bad file, before anything runs
        for name, low in (("image_size", 32), ("batch_size", 2), ("epochs", 1), ("steps", 1), ("workers", 0),
                          ("eval_every", 0), ("max_train", 0), ("max_test", 0), ("profile_data", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                why = {"batch_size": " (BatchNorm needs at least 2 examples per batch to estimate its statistics)",
                       "image_size": " (the network downsamples by 32)"}.get(name, "")
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}{why}, got {value!r}")
        if self.image_size % 32:
            raise ValueError(f"--image-size must be a multiple of 32, got {self.image_size}")
        if not (self.lr > 0):
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.anomaly_p is not None and not 0.0 <= self.anomaly_p <= 1.0:
            raise ValueError(f"--anomaly-p must lie in [0, 1], got {self.anomaly_p}")
        for name, options in (("device", DEVICES), ("pooling", POOLINGS), ("synthesis", SYNTHESIS)):
            if getattr(self, name) not in options:
                raise ValueError(f"--{name} must be one of {', '.join(options)}, got {getattr(self, name)!r}")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.synthesis == "gpu":
            if self.method != "nsa":
                raise ValueError(f"--synthesis gpu renders NSA (--method nsa); --method {self.method} synthesises on "
                                 "the CPU: drop --synthesis gpu")
            if self.preset is not None and presets.load(self.preset).poisson != "exact":
                raise ValueError("--synthesis gpu solves the exact Poisson formulation; this preset uses "
                                 "poisson='opencv': use --synthesis cpu or a preset with poisson='exact'")

    def for_category(self, category: str) -> CategorySettings:
        """The per-category choices that follow from these settings."""
        preset = self.preset or (f"mvtec/{category}" if f"mvtec/{category}" in presets.PRESETS else "mvtec/tile")
        meta = presets.TRAINING.get(preset, {"kind": "texture", "epochs": 320})
        kind = self.kind or ("object" if meta["kind"] == "object" else "texture")
        p = registry.get(self.method).anomaly_p if self.anomaly_p is None else self.anomaly_p
        return CategorySettings(category, preset, kind, self.epochs or meta["epochs"], p)


@dataclass(frozen=True)
class CategorySettings:
    """The preset, augmentation kind, epochs and anomaly probability of one category's run."""

    category: str
    preset: str
    kind: str
    epochs: int
    anomaly_p: float


def model_settings(settings: TrainSettings, cat: CategorySettings, total_steps: int) -> dict:
    """Everything that shapes the trained model: stored in the checkpoint and compared on resume."""
    return {
        "method": settings.method, "preset": cat.preset, "kind": cat.kind, "anomaly_p": cat.anomaly_p,
        "image_size": settings.image_size, "batch_size": settings.batch_size, "lr": settings.lr,
        "seed": settings.seed, "total_steps": total_steps, "max_train": settings.max_train,
        "synthesis": settings.synthesis,
    }


#: Settings added after checkpoints were first written, with the value every older run had.
ADDED_LATER = {"synthesis": "cpu"}


def settings_differences(stored: dict, current: dict) -> list[str]:
    """Human-readable differences between a checkpoint's settings and this run's."""
    stored = {**ADDED_LATER, **stored}
    keys = sorted(set(stored) | set(current))
    return [f"{k}: checkpoint {stored.get(k)!r}, now {current.get(k)!r}" for k in keys if stored.get(k) != current.get(k)]


TRAIN_HELP = """\
Train and evaluate the NSA paper's anomaly localisation model on MVTec-layout data:
<root>/<category>/train/good/*, test/<type>/*, ground_truth/<type>/<name>_mask.png.

Per category: synthetic anomalies (--method, NSA by default) in the augmented training images with
another augmented training image as patch source, BCE (MSE for raw intensity labels), Adam with
cosine decay to 1e-6, the final model evaluated with image AUROC (mean of the predicted map), pixel
AUROC and AU-PRO@0.3. Writes metrics.json, train_log.csv, a resumable checkpoint.pt (saved
atomically every epoch) and predictions.png into OUT/<category>; with --category all also
summary.md / summary.json beside the paper's numbers. Re-running into the same OUT resumes; a
checkpoint trained with other settings stops the run with the differences (--no-resume starts
over). See docs/training.md.

examples:
  nsa-augment train --root /data/mvtec --category bottle --out runs
  nsa-augment train --root ../shared/data --category magnetic_tile --preset mvtec/tile \\
      --image-size 128 --epochs 30 --batch-size 16 --out runs
  torchrun --nproc_per_node=4 -m nsa_augment train --root /data/mvtec --category all --out runs
"""


def add_train_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``train`` command's arguments (one declaration for the CLI and examples/train_mvtec.py)."""
    d = TrainSettings(root=Path("."), category="")
    ap.add_argument("--root", type=Path, required=True, help="dataset root holding <category>/train/good etc.")
    ap.add_argument("--category", required=True, help="category name, or 'all' for every category found")
    ap.add_argument("--out", type=Path, default=d.out, help="output folder (default: %(default)s)")
    ap.add_argument("--method", default=d.method, choices=registry.METHODS, help="synthetic anomaly method (default: nsa)")
    ap.add_argument("--preset", help="generator preset name, or a JSON file of NSAConfig fields (default: "
                    "mvtec/<category> if it exists, else mvtec/tile)")
    ap.add_argument("--kind", choices=KINDS, help="augmentation kind (default: from the preset)")
    ap.add_argument("--image-size", type=int, default=d.image_size, help="training/eval resolution, multiple of 32 "
                    "(default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size, at least 2 "
                    "(default: %(default)s)")
    ap.add_argument("--epochs", type=int, help="epochs (default: the class's 320 or 560)")
    ap.add_argument("--steps", type=int, help="stop after this many optimiser steps instead (overrides --epochs)")
    ap.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers per process (default: %(default)s)")
    ap.add_argument("--device", default=d.device, choices=DEVICES)
    ap.add_argument("--anomaly-p", type=float, help="fraction of training examples made anomalous (default: what the "
                    "method's paper used: 1.0 for NSA, FPI, PII and CutPaste-NSA as in the NSA reference, 0.5 for "
                    "CutPaste, CutPaste-Scar and DRAEM)")
    ap.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs (default: only at the end)")
    ap.add_argument("--pooling", default=d.pooling, choices=POOLINGS, help="image score from the map (default: mean)")
    ap.add_argument("--max-train", type=int, default=0, help="use at most N training images (smoke tests)")
    ap.add_argument("--max-test", type=int, default=0, help="evaluate on at most N test images per defect type")
    ap.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    ap.add_argument("--profile-data", type=int, default=d.profile_data,
                    help="time the data pipeline alone on N samples (0: skip)")
    ap.add_argument("--synthesis", default=d.synthesis, choices=SYNTHESIS,
                    help="where NSA anomalies are rendered: 'cpu' (default) in the DataLoader workers, or 'gpu': "
                    "plans drawn in the workers, the whole batch rendered on the training device "
                    "(nsa_augment.torch.render_batch), so that synthesis keeps up with a GPU")
    return ap


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    return TrainSettings(**{k: v for k, v in vars(args).items() if k in names})


EVALUATE_HELP = """\
Evaluate a checkpoint written by `nsa-augment train` on a category's test set, with the settings
stored in the checkpoint (image size, augmentation kind): image AUROC, pixel AUROC, AU-PRO@0.3.
Writes evaluation.json and evaluation.png next to the checkpoint, or into --out.

example:
  nsa-augment evaluate --root /data/mvtec --category bottle --checkpoint runs/bottle/checkpoint.pt
"""


def add_evaluate_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``evaluate`` command's arguments."""
    ap.add_argument("--root", type=Path, required=True, help="dataset root holding <category>/test etc.")
    ap.add_argument("--category", required=True)
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt from nsa-augment train")
    ap.add_argument("--out", type=Path, help="output folder (default: the checkpoint's folder)")
    ap.add_argument("--max-test", type=int, default=0, help="at most N test images per defect type (default: all)")
    ap.add_argument("--pooling", default="mean", choices=POOLINGS)
    ap.add_argument("--device", default="auto", choices=DEVICES)
    return ap
