"""examples/train_mvtec.py on a handful of real magnetic-tile images: train, evaluate, resume, DDP, errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import MAGNETIC_TILE, ROOT

sys.path.insert(0, str(ROOT / "examples"))
import train_mvtec  # noqa: E402

FAST = ["--image-size", "64", "--batch-size", "4", "--workers", "0", "--profile-data", "4"]


def _make_dataset(root: Path, name: str = "tiles") -> Path:
    """A tiny MVTec-layout category from real images: 6 train, 3 good + 3 defect test images, one without mask."""
    base = root / name
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (base / sub).mkdir(parents=True)
    src = MAGNETIC_TILE
    if src.is_dir():
        train = sorted((src / "train" / "good").glob("*.jpg"))[:6]
        good = sorted((src / "test" / "good").glob("*.jpg"))[:3]
        cracks = sorted((src / "test" / "crack").glob("*.jpg"))[:3]
        for f in train:
            shutil.copy(f, base / "train" / "good" / f.name)
        for f in good:
            shutil.copy(f, base / "test" / "good" / f.name)
        for f in cracks:
            shutil.copy(f, base / "test" / "crack" / f.name)
        for f in cracks[:2]:
            shutil.copy(src / "ground_truth" / "crack" / f"{f.stem}_mask.png", base / "ground_truth" / "crack")
    else:  # outside the checkout layout: synthetic stand-ins
        rng = np.random.default_rng(0)
        for i in range(6):
            cv2.imwrite(str(base / "train" / "good" / f"{i:03d}.png"), rng.integers(90, 110, (70, 90), dtype=np.uint8))
        for i in range(3):
            cv2.imwrite(str(base / "test" / "good" / f"{i:03d}.png"), rng.integers(90, 110, (70, 90), dtype=np.uint8))
            img = rng.integers(90, 110, (70, 90), dtype=np.uint8)
            img[20:30, 20:50] = 200
            cv2.imwrite(str(base / "test" / "crack" / f"{i:03d}.png"), img)
            if i < 2:
                mask = np.zeros((70, 90), np.uint8)
                mask[20:30, 20:50] = 255
                cv2.imwrite(str(base / "ground_truth" / "crack" / f"{i:03d}_mask.png"), mask)
    return root


def test_train_evaluate_and_resume(tmp_path, capsys):
    root = _make_dataset(tmp_path / "data")
    out = tmp_path / "runs"
    args = ["--root", str(root), "--category", "tiles", "--out", str(out), "--steps", "3", *FAST]
    assert train_mvtec.main(args) == 0
    run = out / "tiles"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "au_pro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["steps"] == 3 and metrics["test_images"] == 6 and len(metrics["missing_masks"]) == 1
    assert metrics["throughput"]["pipeline_samples_per_s_per_process"] > 0
    assert cv2.imread(str(run / "predictions.png")) is not None
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss,lr") and len(log) == 3  # header + 2 epochs of 2 steps (3 steps total)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    # resume and continue to 5 steps
    assert train_mvtec.main(["--root", str(root), "--category", "tiles", "--out", str(out), "--steps", "5", *FAST]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["steps"] == 5


def test_category_all_writes_summary(tmp_path):
    root = _make_dataset(tmp_path / "data", "tiles")
    shutil.copytree(root / "tiles", root / "tiles2")
    out = tmp_path / "runs"
    assert train_mvtec.main(["--root", str(root), "--category", "all", "--out", str(out), "--steps", "1", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["category"] for r in summary["results"]] == ["tiles", "tiles2"]
    assert "| **mean** |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("method", ["cutpaste", "pii", "draem"])
def test_peer_methods_train(tmp_path, method):
    root = _make_dataset(tmp_path / "data")
    assert train_mvtec.main(["--root", str(root), "--category", "tiles", "--out", str(tmp_path / "r"), "--steps", "1",
                             "--method", method, *FAST]) == 0
    assert json.loads((tmp_path / "r" / "tiles" / "metrics.json").read_text())["method"] == method


def test_clear_errors(tmp_path, capsys):
    root = _make_dataset(tmp_path / "data")
    cases = [
        (["--root", str(tmp_path / "nope"), "--category", "tiles"], "is not a folder"),
        (["--root", str(root), "--category", "bottle"], "category 'bottle' not found"),
        (["--root", str(root), "--category", "tiles", "--image-size", "100"], "multiple of 32"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--root", str(root), "--category", "tiles", "--device", "cuda"], "no CUDA GPU"))
    empty = tmp_path / "empty"
    (empty / "cat" / "train" / "good").mkdir(parents=True)
    cases.append((["--root", str(empty), "--category", "cat"], "holds no images"))
    for args, message in cases:
        # the case's own arguments come last so that they win over FAST's defaults; --steps keeps a
        # wrongly accepted case short instead of training for the class's full schedule
        assert train_mvtec.main([*FAST, "--steps", "1", "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_two_process_ddp_on_cpu(tmp_path):
    root = _make_dataset(tmp_path / "data")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "examples" / "train_mvtec.py"), "--root", str(root), "--category", "tiles", "--out", str(out),
           "--steps", "2", "--device", "cpu", *FAST]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "tiles" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2
    assert proc.stdout.count("image AUROC") == 1  # evaluated once, on rank 0
