"""`nsa-augment train` / `evaluate` on a handful of real magnetic-tile images: runs, resumes, faults, errors."""

import csv
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

from conftest import ROOT, make_category
from nsa_augment.cli import main as cli_main
from nsa_augment.detection import train as train_module
from nsa_augment.detection.metrics import auroc_standard_error, roc_auc
from nsa_augment.numba_cache import NOTICE

FAST = ["--image-size", "64", "--batch-size", "4", "--workers", "0", "--profile-data", "0"]


def _train(root, out, *extra):
    return cli_main(["train", "--root", str(root), "--category", "tiles", "--out", str(out), *FAST, *extra])


def test_train_evaluate_and_resume_through_the_command(tmp_path, capsys):
    root = make_category(tmp_path / "data")
    out = tmp_path / "runs"
    assert _train(root, out, "--steps", "3") == 0
    run = out / "tiles"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "au_pro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["steps"] == 3 and metrics["test_images"] == 6 and len(metrics["missing_masks"]) == 1
    assert metrics["anomaly_p"] == 1.0  # NSA on every example, as the reference
    assert cv2.imread(str(run / "predictions.png")) is not None
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss,lr") and len(log) == 4  # 6 images, batch 4: 1 whole batch per epoch
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["settings"]["method"] == "nsa" and state["settings"]["total_steps"] == 3
    assert not list(run.glob(".*.tmp"))  # no temporary files left behind
    # the same command again resumes (nothing left to train) and evaluates the same model
    capsys.readouterr()
    assert _train(root, out, "--steps", "3") == 0
    assert "resumed from" in capsys.readouterr().out
    assert cli_main(["evaluate", "--root", str(root), "--category", "tiles", "--checkpoint", str(run / "checkpoint.pt")]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["image_auroc"] == pytest.approx(metrics["image_auroc"])
    # every test image's score, from which the image AUROC follows; its test-set standard error beside it
    for name, result in (("scores.csv", metrics), ("evaluation_scores.csv", evaluation)):
        with open(run / name, newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6 and {r["defect"] for r in rows} >= {"good"}
        assert all(r["path"].startswith(f"test/{r['defect']}/") for r in rows)  # relative to the category's folder
        assert roc_auc([int(r["label"]) for r in rows], [float(r["score"]) for r in rows]) == pytest.approx(result["image_auroc"])
        assert result["image_auroc_se"] == pytest.approx(auroc_standard_error(
            result["image_auroc"], sum(int(r["label"]) for r in rows), sum(r["label"] == "0" for r in rows)))


def test_one_loader_pass_serves_every_epoch_and_the_wait_for_data_is_measured(tmp_path, monkeypatch, capsys):
    """Three epochs from one DataLoader pass (no restart, so no idle workers, at an epoch boundary); each
    epoch logs how long the loop waited for batches, and the bound printed comes from that share."""
    passes = []

    class CountingLoader(train_module.DataLoader):
        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    monkeypatch.setattr(train_module, "DataLoader", CountingLoader)
    root = make_category(tmp_path / "data")
    assert _train(root, tmp_path / "runs", "--steps", "3", "--workers", "1", "--profile-data", "8") == 0
    assert passes == [1]  # 6 images, batch 4: one batch per epoch, three epochs
    with open(tmp_path / "runs" / "tiles" / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(0 <= float(r["data_wait_seconds"]) <= float(r["seconds"]) for r in rows)
    waiting = json.loads((tmp_path / "runs" / "tiles" / "metrics.json").read_text())["throughput"]["data_wait_fraction"]
    expected = sum(float(r["data_wait_seconds"]) for r in rows[1:]) / sum(float(r["seconds"]) for r in rows[1:])
    assert waiting == pytest.approx(expected)
    out = capsys.readouterr().out
    assert f"waiting for data {waiting:.0%} of the time: limited by the " in out
    assert ("data pipeline" in out.split("limited by")[-1]) == (waiting >= train_module.WAIT_BOUND)


def test_the_main_process_draws_the_first_items_before_the_workers_start_and_that_changes_nothing(
        tmp_path, monkeypatch):
    """Kernels compile once in the main process (forked workers inherit them), not in every worker at once;
    the items are keyed, so the run's losses and scores are the same without that step."""
    drawn, at_loader = [], []
    real_getitem = train_module.SyntheticAnomalyDataset.__getitem__

    def counting_getitem(self, key):
        drawn.append(key)
        return real_getitem(self, key)

    class RecordingLoader(train_module.DataLoader):
        def __init__(self, *args, **kwargs):
            at_loader.append(list(drawn))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(train_module.SyntheticAnomalyDataset, "__getitem__", counting_getitem)
    monkeypatch.setattr(train_module, "DataLoader", RecordingLoader)
    root = make_category(tmp_path / "data")
    assert _train(root, tmp_path / "drawn", "--steps", "2") == 0
    assert at_loader == [[(0, i) for i in range(6)]]  # all 6 images (WARM_ITEMS = 8), before the loader
    monkeypatch.setattr(train_module, "compile_in_main", lambda dataset, ddp: None)
    assert _train(root, tmp_path / "not_drawn", "--steps", "2") == 0
    drop = ("seconds", "cpu_seconds", "data_wait_seconds", "samples_per_s")  # timings
    for name in ("train_log.csv", "scores.csv"):
        drawn_first, not_drawn = ([{k: v for k, v in row.items() if k not in drop}
                                   for row in csv.DictReader((tmp_path / run / "tiles" / name).read_text().splitlines())]
                                  for run in ("drawn", "not_drawn"))
        assert drawn_first == not_drawn


# Runs `nsa-augment train` with a listener, inherited by the forked workers, that records which process compiles
# each of our kernels.
_WATCHED_TRAIN = """
import os, sys
from numba.core import event
from nsa_augment.cli import main
from nsa_augment.numba_cache import is_ours

class Record(event.Listener):
    def on_start(self, ev):
        if is_ours(ev):
            with open(sys.argv[1], "a") as f:
                f.write(f"{os.getpid()}\\n")

    def on_end(self, ev):
        pass

event.register("numba:compile", Record())
print("main", os.getpid())
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_on_a_cold_cache_the_workers_compile_nothing(tmp_path):
    """A fresh Numba cache and two workers: the kernels compile once, in the main process (one notice on stderr),
    instead of in both workers at once."""
    root = make_category(tmp_path / "data")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NO_ALBUMENTATIONS_UPDATE="1", PYTHONPATH=str(ROOT))
    compiled = tmp_path / "compiled.txt"
    cmd = [sys.executable, "-c", _WATCHED_TRAIN, str(compiled), "train", "--root", str(root), "--category", "tiles",
           "--out", str(tmp_path / "runs"), "--steps", "2", "--image-size", "64", "--batch-size", "4", "--workers", "2",
           "--profile-data", "0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    main_pid = proc.stdout.split()[1]
    assert set(compiled.read_text().split()) == {main_pid}  # every compile in the main process, none in a worker
    assert proc.stderr.count(NOTICE) == 1, proc.stderr[-3000:]


def test_data_wait_fraction_leaves_out_the_first_epoch_and_older_rows():
    rows = [{"seconds": 4.0, "data_wait_seconds": 3.0}, {"seconds": 2.0, "data_wait_seconds": 0.5},
            {"seconds": 2.0, "data_wait_seconds": 0.0}]
    assert train_module.data_wait_fraction(rows) == pytest.approx(0.125)  # the workers' start-up left out
    assert train_module.data_wait_fraction(rows[:1]) == pytest.approx(0.75)
    assert train_module.data_wait_fraction([{"seconds": 2.0}]) is None  # a checkpoint from before the column


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    root = make_category(tmp_path / "data")
    out = tmp_path / "runs"
    real_save = torch.save
    calls = []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's checkpoint: some bytes, then the disk is full
            f.write(b"PK\x03\x04 partial checkpoint")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(train_module.torch, "save", failing_save)
    assert _train(root, out, "--steps", "4") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    run = out / "tiles"
    state = torch.load(run / "checkpoint.pt", weights_only=True)  # the epoch-1 checkpoint, intact
    assert state["epoch"] == 1 and state["step"] == 1
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert _train(root, out, "--steps", "4") == 0
    assert "resumed from" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 4
    # the time of the epoch trained before the interruption counts too: a resumed run reports its whole cost
    log = list(csv.DictReader((run / "train_log.csv").read_text().splitlines()))
    assert len(log) == 4 and metrics["train_time"]["epochs"] == 4
    assert metrics["train_time"]["wall_s"] == pytest.approx(sum(float(r["seconds"]) for r in log))
    assert metrics["train_time"]["cpu_s"] == pytest.approx(sum(float(r["cpu_seconds"]) for r in log))
    assert all(float(r["cpu_seconds"]) > 0.0 for r in log)


def test_training_time_and_log_with_epochs_from_an_older_version(tmp_path):
    """Epochs checkpointed before the CPU column existed: the log keeps every column, the CPU total is unknown."""
    old = {"epoch": 1, "step": 1, "loss": 0.5, "lr": 1e-3, "samples_per_s": 10.0, "seconds": 2.0}
    new = {**old, "epoch": 2, "step": 2, "cpu_seconds": 3.0}
    train_module.write_log(tmp_path / "log.csv", [old, new])
    rows = list(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert rows[0]["cpu_seconds"] == "" and rows[1]["cpu_seconds"] == "3.0"
    assert train_module.training_time([old, new]) == {"epochs": 2, "wall_s": 4.0, "cpu_s": None}
    assert train_module.training_time([new]) == {"epochs": 1, "wall_s": 2.0, "cpu_s": 3.0}


@pytest.mark.parametrize("change, difference", [
    (["--steps", "5"], "total_steps: checkpoint 3, now 5"),
    (["--steps", "3", "--method", "cutpaste"], "method: checkpoint 'nsa', now 'cutpaste'"),
    (["--steps", "3", "--image-size", "96"], "image_size: checkpoint 64, now 96"),
])
def test_resume_with_other_settings_stops_with_the_differences(tmp_path, capsys, change, difference):
    root = make_category(tmp_path / "data")
    out = tmp_path / "runs"
    assert _train(root, out, "--steps", "3") == 0
    before = (out / "tiles" / "metrics.json").read_text()
    capsys.readouterr()
    assert _train(root, out, *change) == 2
    err = capsys.readouterr().err
    assert difference in err and "--no-resume" in err and "Traceback" not in err and err.count("\n") == 1
    assert (out / "tiles" / "metrics.json").read_text() == before  # nothing relabelled
    assert _train(root, out, *change, "--no-resume") == 0


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--steps", "-3"], "--steps must be an integer >= 1"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 2"),
    (["--batch-size", "1"], "BatchNorm needs at least 2"),
    (["--image-size", "0"], "--image-size must be an integer >= 32"),
    (["--image-size", "100"], "multiple of 32"),
    (["--anomaly-p", "1.5"], "--anomaly-p must lie in [0, 1]"),
    (["--batch-size", "8"], "--batch-size 8 exceeds the 6 training images"),
    (["--preset", "mvtec/nope"], "unknown preset"),
    (["--synthesis", "gpu", "--method", "cutpaste"], "--synthesis gpu renders NSA"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    root = make_category(tmp_path / "data")
    out = tmp_path / "o"
    assert _train(root, out, "--steps", "1", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (out / "tiles" / "checkpoint.pt").exists()


def _rewrite_masks(root: Path, fn):
    for path in sorted((root / "tiles" / "ground_truth").rglob("*.png")):
        cv2.imwrite(str(path), fn(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))


def test_masks_stored_as_zero_one_count_as_defects(tmp_path):
    root = make_category(tmp_path / "data")
    results = []
    for variant in ("0-255", "0-1"):
        if variant == "0-1":
            _rewrite_masks(root, lambda m: (m > 0).astype(np.uint8))
        assert _train(root, tmp_path / variant, "--steps", "1") == 0
        results.append(json.loads((tmp_path / variant / "tiles" / "metrics.json").read_text()))
    assert results[1]["pixel_auroc"] is not None and results[1]["pixel_auroc"] == pytest.approx(results[0]["pixel_auroc"])
    assert results[1]["au_pro"] == pytest.approx(results[0]["au_pro"])


@pytest.mark.parametrize("damage, message", [
    (lambda base: shutil.rmtree(base / "test"), "does not exist: evaluation needs test/good/"),
    (lambda base: shutil.rmtree(base / "test" / "crack"), "holds 3 good and 0 defective images"),
    (lambda base: shutil.rmtree(base / "test" / "good"), "holds 0 good and 3 defective images"),
    (lambda base: _rewrite_masks(base.parent, lambda m: cv2.resize(m, (20, 20))), "masks must have their image's size"),
])
def test_test_set_is_checked_before_training(tmp_path, capsys, damage, message):
    root = make_category(tmp_path / "data")
    damage(root / "tiles")
    assert _train(root, tmp_path / "o", "--steps", "1") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "tiles" / "checkpoint.pt").exists()  # refused before training


def test_undefined_metrics_are_reported_as_undefined(tmp_path, capsys):
    root = make_category(tmp_path / "data")
    shutil.rmtree(root / "tiles" / "ground_truth")  # image-level labels only
    assert _train(root, tmp_path / "o", "--steps", "1") == 0
    out = capsys.readouterr().out
    assert "pixel AUROC UNDEFINED (no defect pixel" in out and "AU-PRO UNDEFINED" in out
    metrics = json.loads((tmp_path / "o" / "tiles" / "metrics.json").read_text())
    assert metrics["pixel_auroc"] is None and metrics["au_pro"] is None and 0 <= metrics["image_auroc"] <= 1


def test_max_test_header_counts_what_is_evaluated(tmp_path, capsys):
    root = make_category(tmp_path / "data")
    assert _train(root, tmp_path / "o", "--steps", "1", "--max-test", "1") == 0
    out = capsys.readouterr().out
    assert "2 test images (1 good, 1 defective)" in out and "on 2 test images:" in out


@pytest.mark.parametrize("method, p", [("cutpaste", 0.5), ("pii", 1.0), ("draem", 0.5)])
def test_peer_methods_train_with_their_papers_anomaly_probability(tmp_path, method, p):
    root = make_category(tmp_path / "data")
    assert _train(root, tmp_path / "r", "--steps", "1", "--method", method) == 0
    metrics = json.loads((tmp_path / "r" / "tiles" / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["anomaly_p"] == p


def test_synthesis_on_the_device_trains_on_the_same_kind_of_examples(tmp_path, capsys):
    """--synthesis gpu: plans in the workers, batches rendered by render_batch on the training device
    (CPU torch here); a worker process and the main process give the same run."""
    root = make_category(tmp_path / "data")
    runs = []
    for workers in ("0", "1"):
        out = tmp_path / f"gpu{workers}"
        assert cli_main(["train", "--root", str(root), "--category", "tiles", "--out", str(out), "--image-size", "64",
                         "--batch-size", "4", "--workers", workers, "--profile-data", "4", "--steps", "2",
                         "--synthesis", "gpu"]) == 0
        runs.append(json.loads((out / "tiles" / "metrics.json").read_text()))
    assert "anomalies rendered on cpu (--synthesis gpu)" in capsys.readouterr().out
    assert runs[0]["synthesis"] == "gpu" and runs[0]["image_auroc"] == runs[1]["image_auroc"]
    state = torch.load(tmp_path / "gpu0" / "tiles" / "checkpoint.pt", weights_only=True)
    assert state["settings"]["synthesis"] == "gpu"


def test_device_batches_are_the_planned_examples(tmp_path):
    """What the training step renders equals the NumPy renderer on the worker's own images and plans."""
    from nsa_augment import render_anomaly
    from nsa_augment.detection.settings import CategorySettings
    from nsa_augment.torch import PlannedAnomalyDataset, collate_plans, render_batch

    rng = np.random.default_rng(0)
    pool = [cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8), (0, 0), 2) for _ in range(4)]
    cat = CategorySettings("tiles", "mvtec/tile", "texture", 1, 1.0)
    image_geometry, source_geometry = train_module.planning_pipelines(cat, 64)
    ds = PlannedAnomalyDataset(pool, "mvtec/tile", transform=image_geometry, source_transform=source_geometry, seed=3)
    images, sources, plans = collate_plans([ds[(1, i)] for i in range(4)])
    assert images.shape == (4, 3, 64, 64) and all(p.is_anomalous for p in plans)
    again = collate_plans([ds[(1, i)] for i in range(4)])
    assert torch.equal(again[0], images) and again[2] == plans  # (seed, epoch, index) alone decide an item
    out, labels = render_batch(images, sources, plans, "mvtec/tile")
    for i in range(4):
        ref, ref_label = render_anomaly(images[i].permute(1, 2, 0).numpy(), sources[i].permute(1, 2, 0).numpy(),
                                        "mvtec/tile", plans[i])
        assert np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref).max() <= 1
        assert np.abs(labels[i].numpy() - ref_label).max() <= 0.02
    normalized = train_module.normalize_batch(out)
    expected = train_module.normalize(np.uint8)(image=out[0].permute(1, 2, 0).numpy())["image"]
    np.testing.assert_array_equal(normalized[0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_uint8_batches_travel_unnormalised_and_normalise_as_albumentations_does(dtype):
    """The workers hand out uint8 images (a quarter of float32's bytes); the loop's normalisation of them is
    ``A.Normalize``'s, bit for bit, so training sees what it saw when the workers normalised."""
    from nsa_augment.detection.settings import CategorySettings

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8), (0, 0), 2)
    image = image if dtype == np.uint8 else image.astype(np.float32) / 255
    cat = CategorySettings("tiles", "mvtec/tile", "texture", 1, 1.0)
    pipeline, _ = train_module.train_pipelines("nsa", cat, 64, dtype)
    item = pipeline(image=image, mask=np.zeros((80, 80), np.float32))["image"]
    assert item.dtype == (torch.uint8 if dtype == np.uint8 else torch.float32)  # float data: normalised there
    every = rng.permutation(np.repeat(np.arange(256, dtype=np.uint8), 3 * 16)).reshape(4, 3, 32, 32)
    every = np.concatenate([every, rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)])
    got = train_module.normalize_batch(torch.from_numpy(every)).numpy()
    assert got.dtype == np.float32
    for b in range(len(every)):
        want = train_module.normalize(np.uint8)(image=every[b].transpose(1, 2, 0))["image"]
        np.testing.assert_array_equal(got[b].transpose(1, 2, 0), want)


def test_category_all_writes_summary(tmp_path):
    root = make_category(tmp_path / "data", "tiles")
    shutil.copytree(root / "tiles", root / "tiles2")
    out = tmp_path / "runs"
    assert cli_main(["train", "--root", str(root), "--category", "all", "--out", str(out), "--steps", "1", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["category"] for r in summary["results"]] == ["tiles", "tiles2"]
    assert "| **mean** |" in (out / "summary.md").read_text()


def test_clear_errors(tmp_path, capsys):
    root = make_category(tmp_path / "data")
    cases = [
        (["--root", str(tmp_path / "nope"), "--category", "tiles"], "is not a folder"),
        (["--root", str(root), "--category", "bottle"], "category 'bottle' not found"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--root", str(root), "--category", "tiles", "--device", "cuda"], "no CUDA GPU"))
    empty = tmp_path / "empty"
    (empty / "cat" / "train" / "good").mkdir(parents=True)
    cases.append((["--root", str(empty), "--category", "cat"], "holds no images"))
    for args, message in cases:
        assert cli_main(["train", *FAST, "--steps", "1", "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert cli_main(["evaluate", "--root", str(root), "--category", "tiles", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_example_script_still_runs(tmp_path):
    root = make_category(tmp_path / "data")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "train_mvtec.py"), "--root", str(root), "--category",
                           "tiles", "--out", str(tmp_path / "ex"), "--steps", "1", *FAST],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "ex" / "tiles" / "metrics.json").read_text())["steps"] == 1


def test_two_process_ddp_on_cpu(tmp_path):
    root = make_category(tmp_path / "data")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "nsa_augment",
           "train", "--root", str(root), "--category", "tiles", "--out", str(out), "--steps", "2", "--device", "cpu", *FAST]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "tiles" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2
    assert proc.stdout.count("image AUROC") == 1  # evaluated once, on rank 0


@pytest.mark.slow
def test_train_help_from_a_wheel_install(tmp_path):
    """A wheel (not the source tree) carries the detection subpackage and the console script."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=600, capture_output=True)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    *map(str, wheels.glob("*.whl"))], check=True, timeout=600, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target), NO_ALBUMENTATIONS_UPDATE="1")
    code = "import nsa_augment.detection.train as t, sys; assert t.__file__.startswith(sys.argv[1]), t.__file__"
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, env=env, cwd=tmp_path, timeout=300)
    proc = subprocess.run([str(target / "bin" / "nsa-augment"), "train", "--help"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "--anomaly-p" in proc.stdout, proc.stderr


def test_training_on_16_bit_images(tmp_path):
    """12-bit data in 16-bit PNGs: read without losing bits (float32 in [0, 1] for the network), trained, evaluated."""
    root = make_category(tmp_path / "data")
    for path in (root / "tiles").rglob("*.jpg"):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path.with_suffix(".png")), img.astype(np.uint16) * 16)
        path.unlink()
    assert _train(root, tmp_path / "o", "--steps", "1", "--preset", "chestxray") == 0
    metrics = json.loads((tmp_path / "o" / "tiles" / "metrics.json").read_text())
    assert 0 <= metrics["image_auroc"] <= 1 and metrics["test_images"] == 6


def test_checkpoints_from_before_a_setting_existed_still_resume():
    """A checkpoint written before --synthesis existed holds no such key: it was a CPU-synthesis run."""
    from nsa_augment.detection.settings import settings_differences

    old = {"method": "nsa", "image_size": 64}
    assert settings_differences(old, {**old, "synthesis": "cpu"}) == []
    assert settings_differences(old, {**old, "synthesis": "gpu"}) == ["synthesis: checkpoint 'cpu', now 'gpu'"]
