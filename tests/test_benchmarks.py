"""The benchmark scripts run end to end (no timing assertions: timings live in docs/performance.md)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, tmp_path, *extra):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _benchmark(name):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package: their folder is on
    ``sys.path`` while it loads, for their imports of one another, and taken off again)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_bench_poisson_quick(tmp_path):
    result, stdout = _run("bench_poisson.py", tmp_path)
    rows = result["rows"]
    masks = {"rectangle", "ellipse", "ring", "object"}
    assert {(r["mask"], r["formulation"]) for r in rows} == {(m, f) for m in masks for f in ("opencv", "exact")}
    assert all(r["cv2_ms"] > 0 and r["ours_ms"] > 0 and r["speedup"] > 0 for r in rows)
    assert all(r["exact_err"] <= 0.01 for r in rows if r["formulation"] == "exact")
    assert all(r["exact_err"] <= 1 and r["err"] <= 2 for r in rows if r["formulation"] == "opencv")
    assert "speedup" in stdout and result["threads"]["opencv"] >= 1 and set(result["summary"]) == {"opencv", "exact"}


def test_bench_batch_quick(tmp_path):
    result, stdout = _run("bench_batch.py", tmp_path, "--profile")
    renderers = {(r["renderer"], r["threads"]) for r in result["rows"]}
    assert ("numpy", 1) in renderers and ("torch", 1) in renderers
    assert all(r["examples_per_s"] > 0 and r["plans_per_s"] > 0 for r in result["rows"])
    profiles = [r["profile"] for r in result["rows"] if r["renderer"] == "torch-profile"]
    assert len(profiles) == 2  # one per preset
    for prof in profiles:
        assert 0 < prof["busy_ms"] and prof["operators"] > 100 and len(prof["top"]) == 6
        assert prof["sync_points"].get("aten::nonzero", 0) >= 1  # the disk median's (logistic and object labels)
    assert "profile:" in stdout


def test_bench_pipeline_quick(tmp_path):
    result, stdout = _run("bench_pipeline.py", tmp_path)
    pipelines = {(r["pipeline"], r["workers"]) for r in result["rows"]}
    assert pipelines == {(p, w) for p in ("nsa", "nsa, uint8 out", "reference", "nsa-planning (--synthesis gpu)",
                                          "transfer only", "transfer only, uint8") for w in (0, 1)}
    assert all(r["examples_per_s"] > 0 for r in result["rows"])
    assert all(r["vs_reference"] > 0 for r in result["rows"] if r["pipeline"] != "reference")
    assert {"variables", "pools", "opencv"} <= set(result["threads"])


def test_blend_strength_quick(tmp_path):
    result, stdout = _run("blend_strength.py", tmp_path)
    rows = {r["variant"]: r for r in result["rows"]}
    assert "nsa" in rows and "nsa reference-compatible (both)" in rows and len(rows) == 5
    assert all(r["patches_per_example"] > 0 and r["change_in_boxes"] > 0 and 0 < r["label_in_boxes"] < 1
               for r in rows.values())
    assert "| nsa |" in stdout


def test_bench_synthesis_quick(tmp_path):
    result, stdout = _run("bench_synthesis.py", tmp_path)
    methods = {r["method"] for r in result["rows"]}
    assert {"nsa:carpet", "nsa:hazelnut", "nsa:cable", "reference:carpet", "peer:cutpaste", "peer:pii", "peer:draem"} <= methods
    assert all(r["examples_per_s"] > 0 for r in result["rows"])
    assert {"cold_cache", "warm_cache", "reference", "numba_floor"} <= set(result["first_call"])
    floor = result["first_call"]["numba_floor"]
    assert floor["cold_cache"]["first_call_s"] > 0 and floor["warm_cache"]["first_call_s"] > 0
    volumes = {r["method"]: r for r in result["volumes"]}
    assert volumes["nsa3d:brain-mri"]["examples_per_s"] > 0
    assert all(volumes[f"solver3d:{m}"]["max_diff_levels"] <= 0.5 + 1e-6 for m in ("box", "ellipsoid"))


@pytest.mark.parametrize("block", [1, 3, 4])
def test_bench_synthesis_methods_take_turns_every_block_examples(block):
    """``--block N``: each method runs N examples in a row (the last turn may be shorter), every method
    sees every pair once and in order, and ``block=1`` takes turns example by example."""
    bench = _benchmark("bench_synthesis")
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    calls = []

    def method(name):
        return lambda d, s, rng: calls.append((name, int(d[0, 0, 0]), int(s[0, 0, 0])))

    fns = {name: method(name) for name in ("a", "b", "c")}
    result = bench.run(images, fns, examples=10, block=block)
    assert set(result) == set(fns) and all(r["examples_per_s"] > 0 for r in result.values())
    timed = iter(calls[3 * 3:])  # after three warm-up calls each
    pairs = [(i % 5, (i + 1 + i // 5) % 5) for i in range(10)]
    for start in range(0, 10, block):  # a turn: each method in turn on the turn's pairs, all of them in a row
        chunk = pairs[start:start + block]
        turn = [[next(timed) for _ in chunk] for _ in fns]
        assert sorted(run[0][0] for run in turn) == sorted(fns)
        assert all([c[0] for c in run] == [run[0][0]] * len(chunk) and [c[1:] for c in run] == chunk for run in turn)
    assert next(timed, None) is None


def test_benchmarks_reject_a_block_below_one():
    for script in ("bench_synthesis.py", "synthesis_stages.py"):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--block", "0"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "--block must be at least 1, got 0" in proc.stderr, script


def test_synthesis_stages_quick(tmp_path):
    result, stdout = _run("synthesis_stages.py", tmp_path)
    rows = {r["preset"]: r for r in result["results"]}
    assert set(rows) == {"mvtec/carpet", "mvtec/hazelnut"}
    for preset, r in rows.items():
        kernels = r["kernels_ms"]
        assert all(kernels[k] > 0 for k in ("disk median", "change map", "right-hand side", "resampling",
                                            "tridiagonal solves", "writing the solution", "transforms (forward + inverse)"))
        assert (kernels["object threshold"] > 0) == (preset == "mvtec/hazelnut")
        assert 0 < r["kernel_floor_ms"] < r["instrumented_ms"] and r["speedup_at_floor"] > r["speedup"] > 0
        assert abs(sum(r["stages_ms"].values()) - r["instrumented_ms"]) < 1e-6
    assert "kernel floor" in stdout


def test_synthesis_stages_stops_when_a_kernel_is_not_seen():
    """A kernel the wrappers never see (moved by a refactoring) stops the script instead of a floor without it."""
    stages = _benchmark("synthesis_stages")
    stages.KERNELS = stages.KERNELS + (("phantom", stages.labels, ("make_label",)),)  # synthesize never calls it
    images = [np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8) for i in range(2)]
    with pytest.raises(SystemExit, match="phantom"):
        stages.measure(images, "mvtec/carpet", 2)


def test_authors_generator_passes_the_preset_to_patch_ex_and_names_a_missing_checkout(tmp_path):
    """``bench_synthesis.py --authors-code``: the authors' ``patch_ex`` gets the preset's settings (a stand-in here)."""
    from nsa_augment import presets

    authors = _benchmark("authors_nsa")
    with pytest.raises(FileNotFoundError, match="natural-synthetic-anomalies"):
        authors.authors_generator(tmp_path, presets.get("mvtec/carpet"))
    tasks = tmp_path / "self_sup_data" / "self_sup_tasks.py"
    tasks.parent.mkdir()
    tasks.write_text("import numpy as np\nCALLS = []\n"
                     "def patch_ex(ima_dest, ima_src=None, **kw):\n"
                     "    CALLS.append((np.random.randint(1 << 30), kw))\n"
                     "    return ima_dest.copy(), np.zeros(ima_dest.shape[:2] + (1,))\n")
    hazelnut = presets.get("mvtec/hazelnut")
    run = authors.authors_generator(tmp_path, hazelnut)
    image = np.zeros((32, 32, 3), np.uint8)
    draws = [run(image, image, np.random.default_rng(0)), run(image, image, np.random.default_rng(0))]
    calls = run.patch_ex.__globals__["CALLS"]
    assert calls[0][0] == calls[1][0]  # NumPy's global state seeded from the benchmark's generator
    kw = calls[0][1]
    assert kw["mode"] == cv2.NORMAL_CLONE and kw["label_mode"] == "logistic-intensity"
    assert kw["skip_background"] == list(hazelnut.object_masks) and kw["num_patches"] == hazelnut.num_patches
    assert kw["width_bounds_pct"] == hazelnut.width_bounds and kw["gamma_params"] == hazelnut.gamma
    assert draws[0][0].shape == image.shape
    assert authors.patch_ex_arguments(presets.get("mvtec/carpet"))["mode"] == cv2.MIXED_CLONE


def test_bench_detection_runs_resumes_and_reports(tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_category

    data = make_category(tmp_path / "data")
    out = tmp_path / "det"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_detection.py"), "--data", f"{data}:tiles",
           "--methods", "nsa", "cutpaste", "--arm", "nsa-normal:nsa:mvtec/bottle", "--seeds", "0", "1",
           "--image-size", "64", "--batch-size", "4", "--steps", "1", "--workers", "0", "--quiet", "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    assert {(r["arm"], tuple(r["seeds"])) for r in result["summary"]} == {
        ("nsa", (0, 1)), ("cutpaste", (0, 1)), ("nsa-normal", (0, 1))}
    assert all(0 <= r["image_auroc"]["mean"] <= 1 and r["cpu_s"] > 0 for r in result["summary"])
    assert {r["anomaly_p"] for r in result["runs"]} == {1.0}
    md = (out / "results.md").read_text()
    assert "| tiles | nsa | 2 |" in md and "paired over seeds" in md and "| tiles | cutpaste | 2 |" in md
    assert (out / "auroc_tiles.png").exists() and (out / "roc_tiles.png").exists()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.stdout.count("done already") == 6  # resumes: nothing retrained
    # --jobs: the same runs, three at a time, train the same models
    pooled = subprocess.run([*cmd[:-1], str(tmp_path / "det3"), "--jobs", "3"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert pooled.returncode == 0, pooled.stderr[-2000:]
    runs = {(r["arm"], r["seed"]): r["image_auroc"] for r in result["runs"]}
    pooled_runs = json.loads((tmp_path / "det3" / "results.json").read_text())["runs"]
    assert {(r["arm"], r["seed"]): r["image_auroc"] for r in pooled_runs} == runs
    assert all(json.loads(p.read_text())["jobs"] == 3 for p in (tmp_path / "det3").rglob("timing.json"))


def test_bench_detection_counts_each_runs_own_cpu_time():
    """With --jobs, a run's CPU seconds are its own process tree's, not those of runs that ended meanwhile."""
    bench = _benchmark("bench_detection")
    from concurrent.futures import ThreadPoolExecutor

    burn = [sys.executable, "-c", "import time\nwhile time.process_time() < 1.0: pass"]
    idle = [sys.executable, "-c", "import time; time.sleep(2.0)"]
    with ThreadPoolExecutor(2) as pool:
        busy, quiet = pool.submit(bench._run, burn, True), pool.submit(bench._run, idle, True)
        (code_b, _, cpu_b), (code_q, _, cpu_q) = busy.result(), quiet.result()
    assert code_b == code_q == 0
    assert cpu_b >= 1.0 and cpu_q < 0.5  # the idle child's figure holds none of the busy one's second
    code, err, _ = bench._run([sys.executable, "-c", "import sys; sys.exit('no such data')"], True)
    assert code == 1 and "no such data" in err


def test_bench_detection_leaves_resumed_runs_out_of_the_time_per_run(tmp_path):
    """timing.json times one invocation: a resumed run's earlier segments would be missing from it."""
    bench = _benchmark("bench_detection")
    for seed, wall, epochs in ((0, 100.0, [40.0, 50.0]), (1, 60.0, [40.0, 50.0])):  # seed 1: 90 s trained in 60 s
        run = tmp_path / "tiles" / "nsa" / f"seed{seed}"
        (run / "tiles").mkdir(parents=True)
        (run / "timing.json").write_text(json.dumps({"wall_s": wall, "cpu_s": 2 * wall}))
        (run / "tiles" / "train_log.csv").write_text("epoch,seconds\n" + "".join(f"{i},{s}\n" for i, s in enumerate(epochs)))
        (run / "tiles" / "metrics.json").write_text(json.dumps(
            {"category": "tiles", "method": "nsa", "seed": seed, "image_auroc": 0.6, "pixel_auroc": 0.6, "au_pro": 0.3}))
    result = bench.collect(tmp_path)
    (row,) = result["summary"]
    assert row["wall_s"] == 100.0 and row["cpu_s"] == 200.0 and row["timed_runs"] == 1 and row["resumed_runs"] == 1
    assert "| 1.7 / 3.3 min (1 of 2 runs timed, 1 resumed) |" in bench.markdown(result, "nsa")


def test_multigrid_study_converges_to_the_sparse_solution(tmp_path):
    out = tmp_path / "study.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "multigrid_study.py"), "--sizes", "96",
                           "--masks", "ring", "object", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert [r["mask"] for r in results] == ["ring", "object"]
    for r in results:
        assert r["shipped"]["iterations"] > 0
        for name in ("v-bilinear", "v-aggregation", "v-smoothed-3x3"):
            assert r[name]["iterations"] > 0 and r[name]["max_error"] < 0.01  # relative residual 1e-5 on 0..255 data
        assert r["v-smoothed-3x3"]["level_unknowns"][1] < r["unknowns"] / 6  # 3x3 aggregates: ~9x fewer unknowns


def test_bench_detection_pairs_every_metric(tmp_path):
    """The paired comparison covers pixel AUROC and AU-PRO too, and skips a metric that is undefined."""
    bench = _benchmark("bench_detection")
    values = {"nsa": (0.60, 0.55, None), "cutpaste": (0.70, 0.75, None)}  # no masks: AU-PRO undefined
    for arm, (image, pixel, pro) in values.items():
        for seed, shift in ((0, 0.0), (1, 0.02)):
            run = tmp_path / "tiles" / arm / f"seed{seed}" / "tiles"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps({"category": "tiles", "method": arm, "seed": seed,
                                                          "image_auroc": image + shift, "pixel_auroc": pixel + shift,
                                                          "au_pro": pro, "test_good": 50, "test_defective": 50}))
    md = bench.markdown(bench.collect(tmp_path), "nsa")
    assert "| tiles | cutpaste | image AUROC | 2 | +10.0 |" in md and "| tiles | cutpaste | pixel AUROC | 2 | +20.0 |" in md
    assert "AU-PRO | 2 |" not in md
    # every run on its own line, its image AUROC with the standard error over its 50 + 50 test images
    assert "| tiles | cutpaste | 1 | 72.0 ± 5.1 | 77.0 | - |" in md and "| tiles | nsa | 0 | 60.0 ± 5.7 | 55.0 | - |" in md


def test_bench_detection_pairs_runs_over_their_test_images(tmp_path):
    """Runs with per-image scores (scores.csv / evaluation_scores.csv) are compared seed by seed on the same
    images (DeLong), in the report; a run without scores is left out of that table."""
    bench = _benchmark("bench_detection")
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, int), np.zeros(20, int)]
    for arm, boost, name in (("nsa", 0.0, "scores.csv"), ("fpi", 1.0, "evaluation_scores.csv"), ("pii", 0.0, None)):
        run = tmp_path / "tiles" / arm / "seed0" / "tiles"
        run.mkdir(parents=True)
        scores = rng.normal(labels * (0.5 + boost), 1.0)
        (run / "metrics.json").write_text(json.dumps({"category": "tiles", "method": arm, "seed": 0,
                                                      "image_auroc": 0.7, "pixel_auroc": None, "au_pro": None}))
        if name:
            rows = "".join(f"img{i}.png,{'crack' if y else 'good'},{y},{float(v)!r}\n" for i, (y, v) in enumerate(zip(labels, scores)))
            (run / name).write_text("path,defect,label,score\n" + rows)
    result = bench.report(tmp_path, "nsa")
    (t,) = result["paired_over_images"]
    assert (t["arm"], t["seed"], t["images"]) == ("fpi", 0, 50) and t["difference"] > 0
    assert f"| tiles | fpi | 0 | 50 | {100 * t['difference']:+.1f} ± {100 * t['se']:.1f} |" in (tmp_path / "results.md").read_text()


def test_resize_dataset_copies_load_as_the_originals(tmp_path):
    """A category copied at 64 px reads, through the training code, exactly as the original at 64 px."""
    from conftest import make_category
    from nsa_augment.detection.datasets import load_category, read_rgb, read_test_set

    resize = _benchmark("resize_dataset")
    original = make_category(tmp_path / "data") / "tiles"
    assert resize.main([str(original), str(tmp_path / "small" / "tiles"), "--size", "64"]) == 0
    a, b = load_category(tmp_path / "data", "tiles"), load_category(tmp_path / "small", "tiles")
    assert len(a.train) == len(b.train) == 6
    for p, q in zip(a.train, b.train):
        assert np.array_equal(read_rgb(p, 64), read_rgb(q, 64))
    ta, tb = read_test_set(a, 64), read_test_set(b, 64)
    assert np.array_equal(ta.labels, tb.labels) and np.array_equal(ta.has_mask, tb.has_mask)
    assert np.array_equal(ta.masks, tb.masks) and ta.masks.any()
    assert all(np.array_equal(x, y) for x, y in zip(ta.images, tb.images))
    deep = tmp_path / "deep" / "train" / "good"
    deep.mkdir(parents=True)
    cv2.imwrite(str(deep / "a.png"), np.full((20, 20), 4000, np.uint16))
    with pytest.raises(SystemExit, match="not 8-bit"):
        resize.copy_resized(tmp_path / "deep", tmp_path / "deep64", 16)
