"""Train and evaluate the NSA paper's anomaly localisation model on MVTec-layout data.

    python examples/train_mvtec.py --root /data/mvtec --category bottle --out runs/bottle
    python examples/train_mvtec.py --root ../shared/data --category magnetic_tile --preset mvtec/tile \\
        --image-size 128 --epochs 12 --batch-size 16 --out runs/mt
    torchrun --nproc_per_node=4 examples/train_mvtec.py --root /data/mvtec --category all --out runs/all

Per category: NSA anomalies (or ``--method`` a peer method) synthesised into the
training images with another training image as source, the class's
augmentation, BCE (MSE for raw intensity labels), Adam 1e-3 with cosine decay
to 1e-6, the final model evaluated with image AUROC (mean of the predicted map),
pixel AUROC and AU-PRO@0.3.  Writes ``metrics.json``, ``train_log.csv``, a
resumable ``checkpoint.pt`` and ``predictions.png`` into ``--out/<category>``;
with ``--category all`` also ``summary.md`` / ``summary.json`` beside the
paper's numbers.  See docs/training.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
import torch.distributed as dist
from albumentations.pytorch import ToTensorV2
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from nsa_augment import methods, presets
from nsa_augment.gallery import grid, heatmap, outline
from nsa_augment.detection.metrics import evaluate, image_scores, roc_auc, roc_curve
from nsa_augment.detection.datasets import load_category, find_categories, read_mask, read_rgb
from nsa_augment.detection.network import NSANet, count_parameters
from nsa_augment.torch import SyntheticAnomalyDataset
from nsa_augment.transforms import transform_for

# The paper's Table (mean of 5 seeds), image / pixel AUROC in %, NSA (logistic).
PAPER = {
    "bottle": (97.7, 98.3), "cable": (94.5, 96.0), "capsule": (95.2, 97.6), "hazelnut": (94.7, 97.6),
    "metal_nut": (98.7, 98.4), "pill": (99.2, 98.5), "screw": (90.2, 96.5), "toothbrush": (100.0, 94.9),
    "transistor": (95.1, 88.0), "zipper": (99.8, 94.2), "carpet": (95.6, 95.5), "grid": (99.9, 99.2),
    "leather": (99.9, 99.5), "tile": (100.0, 99.3), "wood": (97.5, 90.7),
}
# Object classes whose parts appear rotated in MVTec AD get the paper's small random rotation.
ROTATED = {"hazelnut", "metal_nut", "screw"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="dataset root holding <category>/train/good etc.")
    ap.add_argument("--category", required=True, help="category name, or 'all' for every category found")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: %(default)s)")
    ap.add_argument("--method", default="nsa", choices=methods.METHODS, help="synthetic anomaly method (default: nsa)")
    ap.add_argument("--preset", help="generator preset (default: mvtec/<category> if it exists, else mvtec/tile)")
    ap.add_argument("--kind", choices=("object", "texture"), help="augmentation kind (default: from the preset)")
    ap.add_argument("--image-size", type=int, default=256, help="training/eval resolution, multiple of 32 (default: 256)")
    ap.add_argument("--batch-size", type=int, default=64, help="global batch size (default: 64)")
    ap.add_argument("--epochs", type=int, help="epochs (default: the class's 320 or 560)")
    ap.add_argument("--steps", type=int, help="stop after this many optimiser steps instead (overrides --epochs)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers per process")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs (default: only at the end)")
    ap.add_argument("--pooling", default="mean", choices=("mean", "max", "top1"), help="image score from the map")
    ap.add_argument("--max-train", type=int, default=0, help="use at most N training images (smoke tests)")
    ap.add_argument("--max-test", type=int, default=0, help="evaluate on at most N test images per defect type")
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--profile-data", type=int, default=64, help="time the data pipeline alone on N samples (0: skip)")
    return ap.parse_args(argv)


# --- set-up -------------------------------------------------------------------------------------


class Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self, device_arg: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_arg == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
        use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.item() / self.world

    def close(self):
        if self.world > 1:
            dist.destroy_process_group()


def settings_for(args, category: str):
    preset = args.preset or (f"mvtec/{category}" if f"mvtec/{category}" in presets.PRESETS else "mvtec/tile")
    meta = presets.TRAINING.get(preset, {"kind": "texture", "epochs": 320})
    kind = args.kind or ("object" if meta["kind"] == "object" else "texture")
    epochs = args.epochs or meta["epochs"]
    return preset, kind, epochs


def train_pipeline(method: str, preset: str, kind: str, size: int, rotate: bool) -> A.Compose:
    """The paper's augmentation, then the synthetic anomaly, then ImageNet normalisation."""
    anomaly = transform_for(method, preset, p=0.5)
    if kind == "object":
        geometry = ([A.Rotate(limit=5, p=0.5)] if rotate else []) + [
            A.CenterCrop(round(size * 230 / 256), round(size * 230 / 256)),
            A.RandomCrop(round(size * 224 / 256), round(size * 224 / 256)),
        ]
    else:
        big = round(size * 264 / 256)
        geometry = [A.Resize(big, big), A.VerticalFlip(p=0.5), A.RandomCrop(size, size)]
    return A.Compose([*geometry, anomaly, A.Normalize(MEAN, STD), ToTensorV2()])


def eval_crop(kind: str, size: int) -> int:
    return round(size * 224 / 256) if kind == "object" else size


# --- evaluation ---------------------------------------------------------------------------------


@torch.no_grad()
def predict(model, images: list[np.ndarray], kind: str, size: int, device, batch: int = 16) -> np.ndarray:
    """Anomaly maps (N, size, size); objects: centre crop fed, prediction zero-padded back (as the paper)."""
    crop = eval_crop(kind, size)
    off = (size - crop) // 2
    norm = A.Compose([A.Normalize(MEAN, STD), ToTensorV2()])
    model.eval()
    maps = np.zeros((len(images), size, size), np.float32)
    for i in range(0, len(images), batch):
        chunk = [img[off : off + crop, off : off + crop] for img in images[i : i + batch]]
        x = torch.stack([norm(image=c)["image"] for c in chunk]).to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = torch.sigmoid(model(x).float())[:, 0]
        else:
            out = torch.sigmoid(model(x))[:, 0]
        maps[i : i + len(chunk), off : off + crop, off : off + crop] = out.cpu().numpy()
    return maps


def load_test(cat, size: int, max_per_type: int = 0):
    samples = cat.test
    if max_per_type:
        per, kept = {}, []
        for s in samples:
            if per.get(s.defect, 0) < max_per_type:
                kept.append(s)
                per[s.defect] = per.get(s.defect, 0) + 1
        samples = kept
    images = [read_rgb(s.path, size) for s in samples]
    masks = np.stack([read_mask(s, size) for s in samples]) if samples else np.zeros((0, size, size), bool)
    labels = np.array([s.label for s in samples])
    has_mask = np.array([s.label == 0 or s.mask_path is not None for s in samples])
    return samples, images, masks, labels, has_mask


def evaluate_model(model, test, kind, size, device, pooling):
    samples, images, masks, labels, has_mask = test
    maps = predict(model, images, kind, size, device)
    metrics = evaluate(labels, masks, maps, pooling=pooling, mask_valid=has_mask)
    for other in ("mean", "max", "top1"):  # the other poolings, for reference
        if other != pooling:
            metrics[f"image_auroc_{other}"] = roc_auc(labels, image_scores(maps, other))
    return metrics, maps


def prediction_grid(path: Path, test, maps: np.ndarray, rows: int = 12):
    samples, images, masks, labels, _ = test
    by_type: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if labels[i]:
            by_type.setdefault(s.defect, []).append(i)
    per_type = max(1, (rows * 2 // 3) // max(1, len(by_type)))
    defect = [i for idx in by_type.values() for i in idx[:per_type]][: rows * 2 // 3]  # every defect type shown
    good = [i for i in range(len(samples)) if not labels[i]][: rows - len(defect)]
    cells = [[images[i], heatmap(maps[i], vmax=1.0), outline(images[i], masks[i].astype(np.float32))] for i in defect + good]
    titles = ["test image", "predicted map", "ground truth"]
    picture = grid(cells, titles, cell=160, row_titles=[samples[i].defect[:12] for i in defect + good])
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


# --- training -----------------------------------------------------------------------------------


def run_category(args, category: str, ddp: Distributed) -> dict:
    preset, kind, epochs = settings_for(args, category)
    out = args.out / category
    out.mkdir(parents=True, exist_ok=True)
    cat = load_category(args.root, category)
    train_files = cat.train[: args.max_train] if args.max_train else cat.train
    t0 = time.perf_counter()
    images = [read_rgb(p, args.image_size) for p in train_files]
    decode_per_s = len(images) / (time.perf_counter() - t0)
    if args.batch_size % ddp.world:
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by the number of processes {ddp.world}")
    per_rank = args.batch_size // ddp.world
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    total_steps = args.steps or epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)

    pipeline = train_pipeline(args.method, preset, kind, args.image_size, category in ROTATED)
    dataset = SyntheticAnomalyDataset(images, pipeline, seed=args.seed * 1000 + ddp.rank)
    torch.manual_seed(args.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    model = NSANet().to(ddp.device)
    if ddp.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        if ddp.world > 1:  # BatchNorm statistics over the global batch (NCCL only)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[ddp.device] if ddp.device.type == "cuda" else None) if ddp.world > 1 else model
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=1e-6)
    loss_name = "mse" if getattr(methods.config(args.method, preset), "label", None) == "intensity" else "bce"
    criterion = nn.BCEWithLogitsLoss() if loss_name == "bce" else None

    ckpt_path = out / "checkpoint.pt"
    start_epoch, step = 0, 0
    if ckpt_path.exists() and not args.no_resume:
        state = torch.load(ckpt_path, map_location=ddp.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        if ddp.main:
            print(f"[{category}] resumed from {ckpt_path} at epoch {start_epoch}, step {step}")

    if ddp.main:
        print(f"[{category}] {len(images)} train / {len(cat.test)} test images, preset {preset} ({kind}), method "
              f"{args.method}, {args.image_size}px, global batch {args.batch_size} on {ddp.world} x {ddp.device}, "
              f"{total_steps} steps ({epochs} epochs), {count_parameters(model) / 1e6:.1f} M parameters")
        if cat.missing_masks:
            print(f"[{category}] {len(cat.missing_masks)} defect images have no mask file: image-level only")

    test = load_test(cat, args.image_size, args.max_test) if ddp.main else None
    log_path = out / "train_log.csv"
    log_new = not log_path.exists() or start_epoch == 0
    history = []
    train_samples_per_s = float("nan")
    for epoch in range(start_epoch, epochs):
        if step >= total_steps:
            break
        # Every epoch's random streams derive from (seed, epoch, rank): reproducible, resumable, distinct.
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch * 1009 + ddp.rank)
        dataset.reseed(int(torch.randint(2**31, (1,), generator=gen)))
        sampler = DistributedSampler(dataset, ddp.world, ddp.rank, shuffle=True, seed=args.seed) if ddp.world > 1 else None
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=per_rank, shuffle=sampler is None, sampler=sampler,
                            num_workers=args.workers, generator=gen, drop_last=False,
                            persistent_workers=False, pin_memory=ddp.device.type == "cuda")
        net.train()
        losses, seen, t_epoch = [], 0, time.perf_counter()
        bar = _progress(loader, f"[{category}] epoch {epoch + 1}/{epochs}", ddp.main)
        for x, y, _ in bar:
            if step >= total_steps:
                break
            x = x.to(ddp.device, non_blocking=True)
            y = y.to(ddp.device, non_blocking=True)[:, None]
            if ddp.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = net(x)
                logits = logits.float()
            else:
                logits = net(x)
            if criterion is not None:
                loss = criterion(logits, y)
            else:  # raw intensity labels (0..255): MSE against the scaled label
                loss = nn.functional.mse_loss(torch.sigmoid(logits), y / 255.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            seen += x.shape[0] * ddp.world
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{seen / (time.perf_counter() - t_epoch):.1f}")
        seconds = time.perf_counter() - t_epoch
        train_samples_per_s = seen / seconds
        row = {"epoch": epoch + 1, "step": step, "loss": ddp.mean(float(np.mean(losses)) if losses else float("nan")),
               "lr": scheduler.get_last_lr()[0], "samples_per_s": train_samples_per_s, "seconds": seconds}
        if ddp.main:
            history.append(row)
            with open(log_path, "w" if log_new else "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if log_new:
                    w.writeheader()
                    log_new = False
                w.writerow(row)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step}, ckpt_path)
            if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < epochs:
                m, _ = evaluate_model(model, test, kind, args.image_size, ddp.device, args.pooling)
                print(f"[{category}] epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
        ddp.barrier()

    result = {}
    if ddp.main:
        metrics, maps = evaluate_model(model, test, kind, args.image_size, ddp.device, args.pooling)
        prediction_grid(out / "predictions.png", test, maps)
        fpr, tpr = roc_curve(test[3], maps.reshape(len(maps), -1).mean(axis=1))
        pipeline_rate = profile_data(dataset, args.profile_data) if args.profile_data else None
        result = {
            "category": category, "method": args.method, "preset": preset, "kind": kind, "seed": args.seed,
            "image_size": args.image_size, "batch_size": args.batch_size, "steps": step, "epochs": epochs,
            "train_images": len(images), "test_images": len(test[0]), "processes": ddp.world, "device": str(ddp.device),
            **metrics, "pooling": args.pooling,
            "missing_masks": [str(p) for p in cat.missing_masks],
            "throughput": {"train_samples_per_s": train_samples_per_s, "decode_images_per_s": decode_per_s,
                           "pipeline_samples_per_s_per_process": pipeline_rate},
            "roc": {"fpr": fpr[:: max(1, len(fpr) // 200)].tolist(), "tpr": tpr[:: max(1, len(tpr) // 200)].tolist()},
        }
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        print(f"[{category}] image AUROC {metrics['image_auroc']:.4f} ({args.pooling} of the map), pixel AUROC "
              f"{metrics['pixel_auroc']:.4f}, AU-PRO {metrics['au_pro']:.4f} -> {out / 'metrics.json'}")
        if pipeline_rate:
            bound = "the data pipeline (CPU)" if pipeline_rate * max(args.workers, 1) < train_samples_per_s else "the training step"
            print(f"[{category}] data pipeline {pipeline_rate:.0f} samples/s per worker x {max(args.workers, 1)} vs "
                  f"training {train_samples_per_s:.1f} samples/s: limited by {bound}")
    ddp.barrier()
    return result


def profile_data(dataset, n: int) -> float:
    """Samples/s of the data pipeline alone (NSA + augmentation + normalisation) in this process."""
    n = min(n, len(dataset) * 4)
    t0 = time.perf_counter()
    for i in range(n):
        dataset[i % len(dataset)]
    return n / (time.perf_counter() - t0)


def _progress(iterable, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def write_summary(out: Path, results: list[dict]):
    lines = ["| category | image AUROC | paper | pixel AUROC | paper | AU-PRO |", "|---|---|---|---|---|---|"]
    for r in results:
        paper = PAPER.get(r["category"], (float("nan"), float("nan")))
        lines.append(f"| {r['category']} | {100 * r['image_auroc']:.1f} | {paper[0]:.1f} | {100 * r['pixel_auroc']:.1f} | "
                     f"{paper[1]:.1f} | {100 * r['au_pro']:.1f} |")
    mean = lambda k: 100 * float(np.nanmean([r[k] for r in results]))  # noqa: E731
    paper_img = [PAPER[r["category"]][0] for r in results if r["category"] in PAPER]
    paper_pix = [PAPER[r["category"]][1] for r in results if r["category"] in PAPER]
    lines.append(f"| **mean** | **{mean('image_auroc'):.1f}** | {np.mean(paper_img) if paper_img else float('nan'):.1f} | "
                 f"**{mean('pixel_auroc'):.1f}** | {np.mean(paper_pix) if paper_pix else float('nan'):.1f} | {mean('au_pro'):.1f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps({"results": results, "paper": PAPER}, indent=2))
    print("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    ddp = None
    try:
        if args.image_size % 32:
            raise ValueError(f"--image-size must be a multiple of 32, got {args.image_size}")
        ddp = Distributed(args.device)
        categories = find_categories(args.root) if args.category == "all" else [args.category]
        if not categories:
            raise ValueError(f"no categories (<category>/train/good) under {args.root}")
        results = [run_category(args, c, ddp) for c in categories]
        if ddp.main and args.category == "all":
            write_summary(args.out, results)
        return 0
    except ValueError as exc:
        print(f"train_mvtec: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if ddp is not None:
            ddp.close()


if __name__ == "__main__":
    sys.exit(main())
