"""The NSA paper's training and evaluation loop (``nsa-augment train`` / ``nsa-augment evaluate``; needs torch).

Per category: synthetic anomalies (``--method``; NSA by default) in the augmented training images,
the patch source another training image augmented the same way (as the NSA reference does), the
class's augmentation, BCE (MSE for raw intensity labels), Adam with cosine decay to 1e-6, the
final model evaluated with image AUROC (mean of the predicted map), pixel AUROC and AU-PRO@0.3.

What a user can rely on: arguments and the test set are checked before any training; checkpoints
are replaced atomically (an interrupt or a full disk leaves the previous one), record the settings
that shaped the model and refuse to resume under other settings; every output file is written
atomically; undefined metrics are reported as undefined; one DataLoader pass serves the whole run (its
workers never wait at an epoch boundary), and an example's randomness depends on ``(seed, epoch,
index)`` only, not on workers or processes.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io as _io
import json
import math
import os
import time
from pathlib import Path

import albumentations as A
import numpy as np
import torch
import torch.distributed as dist
from albumentations.pytorch import ToTensorV2
from torch import nn
from torch.utils.data import DataLoader

from ..gallery import grid, heatmap, outline, to_rgb8
from ..io import replace_atomically, write_image, write_text
from ..methods import registry
from ..torch import (EpochSampler, NSABatchRenderer, PlannedAnomalyDataset, RunSampler, SyntheticAnomalyDataset,
                     Uint8Normalize, collate_plans)
from ..transforms import transform_for
from .datasets import as_one_dtype, check_test_set, find_categories, load_category, read_rgb, read_test_set
from .metrics import auroc_standard_error, evaluate, image_scores, roc_auc, roc_curve
from .network import NSANet, count_parameters
from .settings import CategorySettings, TrainSettings, model_settings, settings_differences

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
METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "au_pro": "AU-PRO"}
UNDEFINED = {
    "image_auroc": "the evaluated test images are all good or all defective",
    "pixel_auroc": "no defect pixel in the evaluated ground truth (no masks, or empty ones)",
    "au_pro": "no defect region in the evaluated ground truth (no masks, or empty ones)",
}


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


def geometry(kind: str, size: int, rotate: bool) -> list:
    """The paper's augmentation before the anomaly. Objects: (rotation,) centre crop 230, random crop 224;
    textures: resize 264, vertical flip, random crop 256 (all scaled with ``size``)."""
    if kind == "object":
        crop = round(size * 230 / 256)
        return ([A.Rotate(limit=5, p=0.5)] if rotate else []) + [
            A.CenterCrop(crop, crop), A.RandomCrop(round(size * 224 / 256), round(size * 224 / 256)),
        ]
    big = round(size * 264 / 256)
    return [A.Resize(big, big), A.VerticalFlip(p=0.5), A.RandomCrop(size, size)]


def train_pipelines(method: str, cat: CategorySettings, size: int, dtype=np.uint8) -> tuple[A.Compose, A.Compose]:
    """The training pipeline (augmentation, anomaly with the run's probability, to tensor) and the
    source's (the same augmentation, drawn independently, as the reference augments its source).

    ``dtype``: the training images' (uint8, or float32 in [0, 1] for data deeper than 8 bits).  uint8
    images leave the DataLoader workers as uint8 and are normalised by the training loop
    (:func:`normalize_batch`, the same values as ``A.Normalize``): a quarter of float32's bytes through
    the workers' shared memory, 1.2x the examples/s of one worker on a 2-core machine and twice the
    batches the main process takes in (docs/performance.md, *In a real DataLoader*).  float32 images
    are normalised in the workers (normalised or not, they are float32)."""
    rotate = cat.category in ROTATED
    anomaly = transform_for(method, cat.preset, p=cat.anomaly_p)
    finish = [] if np.dtype(dtype) == np.uint8 else [normalize(dtype)]
    pipeline = A.Compose([*geometry(cat.kind, size, rotate), anomaly, *finish, ToTensorV2()])
    return pipeline, A.Compose(geometry(cat.kind, size, rotate))


def planning_pipelines(cat: CategorySettings, size: int) -> tuple[A.Compose, A.Compose]:
    """``--synthesis gpu``: the image's and the source's augmentation before planning (the anomaly is
    rendered on the device, normalisation after it: :func:`normalize_batch`)."""
    rotate = cat.category in ROTATED
    return A.Compose(geometry(cat.kind, size, rotate)), A.Compose(geometry(cat.kind, size, rotate))


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """:func:`normalize` on the device: uint8 (0..255) or float32 ([0, 1]) (B, C, H, W) to ImageNet-normalised float32.

    uint8 values are looked up in :func:`normalize`'s own values for 0..255, so a batch normalised
    here equals the same images normalised by ``A.Normalize`` bit for bit (evaluation uses that)."""
    if images.dtype == torch.uint8:
        return _uint8_lookup(images.shape[1], images.device)(images)
    mean, std = _mean_std(images.device)
    return (images - mean) / std


# The constants reach each device once: a copy from the host every batch would make the host wait until
# the GPU has run everything queued before it (nsa_augment.torch.render.upload), every training step.


@functools.lru_cache(maxsize=8)
def _uint8_lookup(channels: int, device: torch.device) -> Uint8Normalize:
    """:func:`normalize` for uint8 batches (:class:`~nsa_augment.torch.Uint8Normalize`), on ``device``."""
    return Uint8Normalize(normalize(np.uint8), channels).to(device)


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(MEAN, device=device).view(1, -1, 1, 1), torch.tensor(STD, device=device).view(1, -1, 1, 1)


def normalize(dtype) -> A.Normalize:
    """ImageNet normalisation of uint8 (0..255) or float32 ([0, 1]) images."""
    return A.Normalize(MEAN, STD, max_pixel_value=255.0 if np.dtype(dtype) == np.uint8 else 1.0)


def label_loss(method: str, preset: str) -> str:
    """``"mse"`` for raw intensity labels (0..255), else ``"bce"``."""
    return "mse" if getattr(registry.config(method, preset), "label", None) == "intensity" else "bce"


def eval_crop(kind: str, size: int) -> int:
    return round(size * 224 / 256) if kind == "object" else size


# --- checkpoints --------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically: a kill or a full disk mid-write leaves the previous one intact."""
    replace_atomically(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:80]}): "
                         "rerun with --no-resume to start over") from None


# --- evaluation ---------------------------------------------------------------------------------


@torch.no_grad()
def predict(model, images: list[np.ndarray], kind: str, size: int, device, batch: int = 16) -> np.ndarray:
    """Anomaly maps (N, size, size); objects: centre crop fed, prediction zero-padded back (as the paper)."""
    crop = eval_crop(kind, size)
    off = (size - crop) // 2
    norm = A.Compose([normalize(images[0].dtype if images else np.uint8), ToTensorV2()])
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


def evaluate_model(model, test, kind: str, size: int, device, pooling: str) -> tuple[dict, np.ndarray]:
    maps = predict(model, test.images, kind, size, device)
    metrics = evaluate(test.labels, test.masks, maps, pooling=pooling, mask_valid=test.has_mask)
    for other in ("mean", "max", "top1"):  # the other poolings, for reference
        if other != pooling:
            metrics[f"image_auroc_{other}"] = roc_auc(test.labels, image_scores(maps, other))
    defective = int(test.labels.sum())
    if math.isfinite(metrics["image_auroc"]):  # the test set's share of its uncertainty (seeds come on top)
        metrics["image_auroc_se"] = auroc_standard_error(metrics["image_auroc"], defective, len(test) - defective)
    return metrics, maps


def write_scores(path: Path, test, scores: np.ndarray, category_dir: Path) -> None:
    """Every test image's score (``image_scores`` of its map) as CSV (``path,defect,label,score``), for
    analyses of your own (e.g. paired comparisons of two models on the same images).  Paths are
    relative to the category's folder (``test/<defect>/<file>``), so runs from other machines compare."""
    text = _io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "defect", "label", "score"])
    for sample, score in zip(test.samples, scores):
        name = Path(os.path.relpath(sample.path, category_dir)).as_posix()
        writer.writerow([name, sample.defect, sample.label, repr(float(score))])
    write_text(path, text.getvalue())


def describe_metrics(metrics: dict) -> str:
    """``image AUROC 0.8123 ± 0.0142, pixel AUROC UNDEFINED (...)``: undefined metrics say so and why.

    The ``±`` is the image AUROC's standard error over the test images (:func:`auroc_standard_error`).
    """
    parts = []
    for key, name in METRIC_NAMES.items():
        value = metrics.get(key)
        spread = f" ± {metrics[key + '_se']:.4f}" if metrics.get(key + "_se") is not None else ""
        parts.append(f"{name} {value:.4f}{spread}" if value is not None and math.isfinite(value)
                     else f"{name} UNDEFINED ({UNDEFINED[key]})")
    return ", ".join(parts)


def json_safe(value):
    """NaN/inf become null (JSON has no NaN): an undefined metric is reported as undefined."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def prediction_grid(path: Path, test, maps: np.ndarray, rows: int = 12) -> None:
    by_type: dict[str, list[int]] = {}
    for i, s in enumerate(test.samples):
        if test.labels[i]:
            by_type.setdefault(s.defect, []).append(i)
    per_type = max(1, (rows * 2 // 3) // max(1, len(by_type)))
    defect = [i for idx in by_type.values() for i in idx[:per_type]][: rows * 2 // 3]  # every defect type shown
    good = [i for i in range(len(test)) if not test.labels[i]][: rows - len(defect)]
    shown = {i: to_rgb8(test.images[i]) for i in defect + good}
    cells = [[shown[i], heatmap(maps[i], vmax=1.0), outline(shown[i], test.masks[i].astype(np.float32))]
             for i in defect + good]
    picture = grid(cells, ["test image", "predicted map", "ground truth"], cell=160,
                   row_titles=[test.samples[i].defect[:12] for i in defect + good])
    write_image(path, picture)


# --- training -----------------------------------------------------------------------------------


def run_category(settings: TrainSettings, category: str, ddp: Distributed) -> dict:
    cat_settings = settings.for_category(category)
    out = settings.out / category
    out.mkdir(parents=True, exist_ok=True)
    cat = load_category(settings.root, category)
    check_test_set(cat)
    test = read_test_set(cat, settings.image_size, settings.max_test) if ddp.main else None
    train_files = cat.train[: settings.max_train] if settings.max_train else cat.train
    if settings.batch_size % ddp.world:
        raise ValueError(f"--batch-size {settings.batch_size} must be divisible by the number of processes {ddp.world}")
    per_rank = settings.batch_size // ddp.world
    if per_rank < 2:
        raise ValueError(f"--batch-size {settings.batch_size} over {ddp.world} processes leaves {per_rank} example per "
                         "process: BatchNorm needs at least 2")
    if len(train_files) < settings.batch_size:
        raise ValueError(f"--batch-size {settings.batch_size} exceeds the {len(train_files)} training images: use "
                         f"--batch-size {max(2, len(train_files))} or less")
    t0 = time.perf_counter()
    images = as_one_dtype([read_rgb(p, settings.image_size) for p in train_files])
    decode_per_s = len(images) / (time.perf_counter() - t0)

    sampler = EpochSampler(len(images), shuffle=True, seed=settings.seed, rank=ddp.rank, world=ddp.world)
    steps_per_epoch = len(sampler) // per_rank  # whole batches only: no batch of one reaches BatchNorm
    epochs = cat_settings.epochs
    total_steps = settings.steps or epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    current = model_settings(settings, cat_settings, total_steps)

    on_device = settings.synthesis == "gpu"
    renderer = None
    if on_device:  # plans drawn in the workers, batches rendered on the training device
        image_geometry, source_geometry = planning_pipelines(cat_settings, settings.image_size)
        config = registry.config(settings.method, cat_settings.preset)
        dataset = PlannedAnomalyDataset(images, config, transform=image_geometry, p=cat_settings.anomaly_p,
                                        seed=settings.seed, source_transform=source_geometry)
        renderer = NSABatchRenderer(config)
    else:
        pipeline, source_geometry = train_pipelines(settings.method, cat_settings, settings.image_size, images[0].dtype)
        dataset = SyntheticAnomalyDataset(images, pipeline, seed=settings.seed, source_transform=source_geometry)
    torch.manual_seed(settings.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    model = NSANet().to(ddp.device)
    if ddp.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        if ddp.world > 1:  # BatchNorm statistics over the global batch (NCCL only)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[ddp.device] if ddp.device.type == "cuda" else None) \
        if ddp.world > 1 else model
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=1e-6)
    criterion = nn.BCEWithLogitsLoss() if label_loss(settings.method, cat_settings.preset) == "bce" else None

    ckpt_path = out / "checkpoint.pt"
    start_epoch, step, history = 0, 0, []
    if ckpt_path.exists() and not settings.no_resume:
        state = load_checkpoint(ckpt_path, ddp.device)
        stored = state.get("settings")
        if stored is None:
            raise ValueError(f"checkpoint {ckpt_path} records no settings (written by an older version): rerun with "
                             "--no-resume to start over, or use another --out")
        diffs = settings_differences(stored, current)
        if diffs:
            raise ValueError(f"checkpoint {ckpt_path} was trained with other settings ({'; '.join(diffs)}): rerun "
                             "with --no-resume to start over, or use another --out (a longer schedule is a new run: "
                             "its learning rate decays differently from the first step)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state.get("history", []))
        if ddp.main:
            print(f"[{category}] resumed from {ckpt_path} at epoch {start_epoch}, step {step}")

    if ddp.main:
        print(f"[{category}] {len(images)} train / {len(test)} test images ({int((test.labels == 0).sum())} good, "
              f"{int(test.labels.sum())} defective), preset {cat_settings.preset} ({cat_settings.kind}), method "
              f"{settings.method} with p = {cat_settings.anomaly_p:g}, {settings.image_size}px, global batch "
              f"{settings.batch_size} on {ddp.world} x {ddp.device}, {total_steps} steps ({epochs} epochs), "
              f"{count_parameters(model) / 1e6:.1f} M parameters, anomalies rendered "
              f"{'on ' + str(ddp.device) + ' (--synthesis gpu)' if on_device else 'in the DataLoader workers'}")
        if cat.missing_masks:
            print(f"[{category}] {len(cat.missing_masks)} defect images have no mask file: image-level only")

    compile_in_main(dataset, ddp)
    # One loader pass for the whole run (RunSampler: every epoch's batches in order), so the workers prepare the
    # next epoch's first batches while this one's last ones train; an item's randomness comes from
    # (seed, epoch, index), not from the workers.
    loader = DataLoader(dataset, batch_size=per_rank, sampler=RunSampler(sampler, per_rank, total_steps - step,
                                                                         start_epoch),
                        num_workers=settings.workers, drop_last=True, pin_memory=ddp.device.type == "cuda",
                        collate_fn=collate_plans if on_device else None)
    batches = iter(loader)
    train_samples_per_s = float("nan")
    for epoch in range(start_epoch, epochs):
        if step >= total_steps:
            break
        net.train()
        losses, seen, t_epoch, cpu_epoch, waited = [], 0, time.perf_counter(), time.process_time(), 0.0
        bar = _progress(range(min(steps_per_epoch, total_steps - step)), f"[{category}] epoch {epoch + 1}/{epochs}",
                        ddp.main)
        for _ in bar:
            t_wait = time.perf_counter()
            x, y, third = next(batches)
            waited += time.perf_counter() - t_wait
            if on_device:  # (images, sources, plans): render the batch here
                with torch.no_grad():
                    x, y = renderer(x.to(ddp.device, non_blocking=True), y.to(ddp.device, non_blocking=True), third)
                x, y = normalize_batch(x), y[:, None]
            else:  # uint8 images come unnormalised (train_pipelines)
                x = x.to(ddp.device, non_blocking=True)
                x = normalize_batch(x) if x.dtype == torch.uint8 else x
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
            # Kept on the device: .item() every step would make the host wait for the GPU each step,
            # so it could not prepare (or, with --synthesis gpu, render) the next batch meanwhile.
            losses.append(loss.detach())
            seen += x.shape[0] * ddp.world
            if hasattr(bar, "set_postfix") and step % 20 == 0:
                bar.set_postfix(loss=f"{torch.stack(losses[-20:]).mean().item():.4f}",
                                img_s=f"{seen / (time.perf_counter() - t_epoch):.1f}")
        # .item() waits for the device's last steps, so the epoch's time includes them.
        epoch_loss = torch.stack(losses).to(torch.float64).mean().item() if losses else float("nan")
        seconds = time.perf_counter() - t_epoch
        train_samples_per_s = seen / seconds
        # This process's CPU time, all its threads (DataLoader worker processes are not included): with the
        # wall time per epoch in the checkpointed history, a resumed run still reports its whole cost.
        row = {"epoch": epoch + 1, "step": step, "loss": ddp.mean(epoch_loss),
               "lr": scheduler.get_last_lr()[0], "samples_per_s": train_samples_per_s, "seconds": seconds,
               "cpu_seconds": time.process_time() - cpu_epoch, "data_wait_seconds": waited}
        history.append(row)
        if ddp.main:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step,
                                        "settings": current, "history": history})
            write_log(out / "train_log.csv", history)
            if settings.eval_every and (epoch + 1) % settings.eval_every == 0 and epoch + 1 < epochs:
                m, _ = evaluate_model(model, test, cat_settings.kind, settings.image_size, ddp.device, settings.pooling)
                print(f"[{category}] epoch {epoch + 1}: {describe_metrics(m)}")
        ddp.barrier()
    del batches  # stops the workers (a pass is not exhausted until one more batch is asked for)

    result = {}
    if ddp.main:
        metrics, maps = evaluate_model(model, test, cat_settings.kind, settings.image_size, ddp.device, settings.pooling)
        prediction_grid(out / "predictions.png", test, maps)
        scores = image_scores(maps, settings.pooling)
        write_scores(out / "scores.csv", test, scores, Path(cat.root) / cat.name)
        fpr, tpr = roc_curve(test.labels, scores)
        pipeline_rate = profile_data(dataset, settings.profile_data) if settings.profile_data else None
        result = {
            "category": category, "method": settings.method, "preset": cat_settings.preset, "kind": cat_settings.kind,
            "anomaly_p": cat_settings.anomaly_p, "seed": settings.seed, "image_size": settings.image_size,
            "batch_size": settings.batch_size, "steps": step, "epochs": epochs, "train_images": len(images),
            "test_images": len(test), "test_good": int((test.labels == 0).sum()), "test_defective": int(test.labels.sum()),
            "processes": ddp.world, "device": str(ddp.device), "synthesis": settings.synthesis, **metrics,
            "pooling": settings.pooling,
            "missing_masks": [str(p) for p in cat.missing_masks],
            "throughput": {"train_samples_per_s": train_samples_per_s, "decode_images_per_s": decode_per_s,
                           "pipeline_samples_per_s_per_process": pipeline_rate,
                           "data_wait_fraction": data_wait_fraction(history)},
            "train_time": training_time(history),
            "roc": {"fpr": fpr[:: max(1, len(fpr) // 200)].tolist(), "tpr": tpr[:: max(1, len(tpr) // 200)].tolist()},
        }
        write_text(out / "metrics.json", json.dumps(json_safe(result), indent=2))
        print(f"[{category}] on {len(test)} test images: {describe_metrics(metrics)} ({settings.pooling} of the map "
              f"for the image score) -> {out / 'metrics.json'}")
        waiting = result["throughput"]["data_wait_fraction"]
        if pipeline_rate and waiting is not None:
            # Measured, not inferred: the share of the training time the loop spent waiting for a batch.
            what = "planning (--synthesis gpu)" if on_device else "data pipeline"
            bound = (f"the {what} (CPU)" if waiting >= WAIT_BOUND
                     else "the training step" + (" (rendering included)" if on_device else ""))
            print(f"[{category}] {what} {pipeline_rate:.0f} samples/s per worker x {max(settings.workers, 1)}, "
                  f"training {train_samples_per_s:.1f} samples/s, waiting for data {waiting:.0%} of the time: "
                  f"limited by {bound}")
    ddp.barrier()
    return result


def training_time(history: list[dict]) -> dict:
    """Wall and CPU seconds of the training epochs, all resumed segments together (evaluation not included).

    ``cpu_s`` is the main process's CPU time (DataLoader workers not included); None when an epoch
    predates that column (a checkpoint from an older version), rather than a silent undercount.
    """
    cpu = [row.get("cpu_seconds") for row in history]
    return {"epochs": len(history), "wall_s": float(sum(row["seconds"] for row in history)),
            "cpu_s": float(sum(cpu)) if cpu and all(c is not None for c in cpu) else None}


#: The share of training time spent waiting for batches from which a run counts as limited by its data.
WAIT_BOUND = 0.1


def data_wait_fraction(history: list[dict]) -> float | None:
    """Share of the training time the loop waited for its next batch, over the epochs after the first (whose
    wait includes starting the workers), or over the only one; None where no epoch records its wait
    (checkpoints of older versions)."""
    rows = [row for row in history if row.get("data_wait_seconds") is not None]
    rows = rows[1:] if len(rows) > 1 else rows
    seconds = sum(row["seconds"] for row in rows)
    return float(sum(row["data_wait_seconds"] for row in rows) / seconds) if rows and seconds > 0 else None


def write_log(path: Path, history: list[dict]) -> None:
    buffer = _io.StringIO()
    # every column any epoch has, in first-seen order: a resumed run's older epochs may lack newer ones
    fields = list(dict.fromkeys(key for row in history for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


#: Items drawn by :func:`compile_in_main`: enough that at least one is anomalous at the peers' p = 0.5
#: (all but 1 in 256 runs) and so reaches every kernel of its method; a few milliseconds each once compiled.
WARM_ITEMS = 8


def compile_in_main(dataset, ddp: Distributed, items: int = WARM_ITEMS) -> None:
    """Draw the run's first items in this process before the DataLoader starts its workers, rank 0 first.

    On a cold Numba cache every worker of every rank would otherwise compile the same kernels at once:
    with more workers than cores that multiplies the wait for the first batch (4 workers on 2 cores:
    11-13 s instead of 5-6 s; ``benchmarks/first_call.py``). Compiled here, they reach forked workers
    compiled and spawned ones through the cache, and the other ranks load what rank 0 compiled. Items
    are keyed ``(epoch, index)``, each drawn from its own streams, so drawing them here changes nothing
    the workers draw.
    """
    keys = [(0, index) for index in range(min(items, len(dataset)))]
    if ddp.main:
        for key in keys:
            dataset[key]
    ddp.barrier()
    if not ddp.main:
        for key in keys:
            dataset[key]


def profile_data(dataset, n: int) -> float:
    """Samples/s of the data pipeline alone in this process (NSA + augmentation, + normalisation for float data; with
    ``--synthesis gpu`` augmentation and planning only)."""
    n = min(n, len(dataset) * 4)
    t0 = time.perf_counter()
    for i in range(n):
        dataset[(0, i % len(dataset))]
    return n / (time.perf_counter() - t0)


def _progress(iterable, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def write_summary(out: Path, results: list[dict]) -> None:
    pct = lambda v: f"{100 * v:.1f}" if v is not None and math.isfinite(v) else "undefined"  # noqa: E731
    lines = ["| category | image AUROC | paper | pixel AUROC | paper | AU-PRO |", "|---|---|---|---|---|---|"]
    for r in results:
        paper = PAPER.get(r["category"], (float("nan"), float("nan")))
        lines.append(f"| {r['category']} | {pct(r['image_auroc'])} | {paper[0]:.1f} | {pct(r['pixel_auroc'])} | "
                     f"{paper[1]:.1f} | {pct(r['au_pro'])} |")
    mean = lambda k: float(np.nanmean([r[k] for r in results])) if any(np.isfinite(r[k]) for r in results) \
        else float("nan")  # noqa: E731
    paper_img = [PAPER[r["category"]][0] for r in results if r["category"] in PAPER]
    paper_pix = [PAPER[r["category"]][1] for r in results if r["category"] in PAPER]
    lines.append(f"| **mean** | **{pct(mean('image_auroc'))}** | {np.mean(paper_img) if paper_img else float('nan'):.1f} | "
                 f"**{pct(mean('pixel_auroc'))}** | {np.mean(paper_pix) if paper_pix else float('nan'):.1f} | "
                 f"{pct(mean('au_pro'))} |")
    write_text(out / "summary.md", "\n".join(lines) + "\n")
    write_text(out / "summary.json", json.dumps(json_safe({"results": results, "paper": PAPER}), indent=2))
    print("\n".join(lines))


def train(settings: TrainSettings) -> list[dict]:
    """Run the settings' categories (``"all"``: every category under the root); the results per category."""
    ddp = Distributed(settings.device)
    try:
        categories = find_categories(settings.root) if settings.category == "all" else [settings.category]
        if not categories:
            raise ValueError(f"no categories (<category>/train/good) under {settings.root}")
        results = [run_category(settings, c, ddp) for c in categories]
        if ddp.main and settings.category == "all":
            write_summary(settings.out, results)
        return results
    finally:
        ddp.close()


# --- evaluation of a trained checkpoint -----------------------------------------------------------


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    """``nsa-augment evaluate``: a checkpoint's metrics on a category's test set (written next to it)."""
    if args.max_test < 0:
        raise ValueError(f"--max-test must be >= 0, got {args.max_test}")
    if not args.checkpoint.is_file():
        raise ValueError(f"checkpoint {args.checkpoint} does not exist")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA GPU is available")
    state = load_checkpoint(args.checkpoint, device)
    stored = state.get("settings")
    if stored is None:
        raise ValueError(f"checkpoint {args.checkpoint} records no settings (written by an older version)")
    cat = load_category(args.root, args.category)
    check_test_set(cat)
    test = read_test_set(cat, stored["image_size"], args.max_test)
    model = NSANet().to(device)
    model.load_state_dict(state["model"])
    metrics, maps = evaluate_model(model, test, stored["kind"], stored["image_size"], device, args.pooling)
    out = args.out or args.checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    result = {"category": args.category, "checkpoint": str(args.checkpoint), "settings": stored,
              "steps": state.get("step"), "test_images": len(test), **metrics, "pooling": args.pooling}
    write_text(out / "evaluation.json", json.dumps(json_safe(result), indent=2))
    prediction_grid(out / "evaluation.png", test, maps)
    write_scores(out / "evaluation_scores.csv", test, image_scores(maps, args.pooling), Path(cat.root) / cat.name)
    print(f"[{args.category}] on {len(test)} test images: {describe_metrics(metrics)} -> {out / 'evaluation.json'}")
    return result
