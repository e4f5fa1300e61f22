"""Compiled kernels are cached: a fresh process loads them instead of recompiling, even when the
package directory cannot hold a cache (Numba then falls back to the user-wide cache directory)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import numpy as np, nsa_augment
assert nsa_augment.__file__.startswith({pkg!r}), nsa_augment.__file__
rng = np.random.default_rng(0)
d = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
for name in ("mvtec/hazelnut", "mvtec/carpet"):
    nsa_augment.synthesize(d, d[::-1].copy(), name, rng)
"""


def test_fresh_process_loads_cache_from_fallback_location(tmp_path):
    pkg_root = tmp_path / "site"
    shutil.copytree(ROOT / "nsa_augment", pkg_root / "nsa_augment", ignore=shutil.ignore_patterns("__pycache__"))
    # A *file* named __pycache__ makes the in-tree cache impossible, as a read-only install would
    # (permissions alone do not stop root, which CI runs as).
    for d in (pkg_root / "nsa_augment").rglob("*"):
        if d.is_dir():
            (d / "__pycache__").touch()
    (pkg_root / "nsa_augment" / "__pycache__").touch()
    home = tmp_path / "home"
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(pkg_root),
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("NUMBA_CACHE_DIR", None)
    code = _RUN.format(pkg=str(pkg_root))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    index_files = sorted((home / ".cache").rglob("*.nbi"))
    assert index_files, "no Numba cache written to the user-wide fallback"
    data_files = sorted((home / ".cache").rglob("*.nbc"))
    stamps = {f: f.stat().st_mtime_ns for f in data_files}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    # loaded, not recompiled: no compiled artefact was rewritten or added
    assert sorted((home / ".cache").rglob("*.nbc")) == data_files
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())
