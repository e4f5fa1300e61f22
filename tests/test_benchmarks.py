"""The benchmark scripts run end to end (no timing assertions: timings live in docs/performance.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_bench_poisson_quick(tmp_path):
    result, stdout = _run("bench_poisson.py", tmp_path)
    rect = [r for r in result["rows"] if r["mask"] == "rectangle"]
    assert rect and all(r["seamlessclone_ms"] > 0 and r["ours_ms"] > 0 for r in rect)
    assert all(r["err"] <= 0.01 and r["err8"] <= 0.51 for r in result["rows"])
    assert {"cold_cache", "warm_cache"} <= set(result["first_call"])
    assert "speedup" in stdout and result["threads"]["cv2_threads"] == 1


def test_bench_synthesis_quick(tmp_path):
    result, stdout = _run("bench_synthesis.py", tmp_path)
    methods = {r["method"] for r in result["rows"]}
    assert {"nsa:carpet", "nsa:hazelnut", "nsa:cable", "reference:carpet", "peer:cutpaste", "peer:pii", "peer:draem"} <= methods
    assert all(r["examples_per_s"] > 0 for r in result["rows"])
    assert {"cold_cache", "warm_cache"} <= set(result["first_call"])
