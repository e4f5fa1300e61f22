"""Compiled kernels are cached: a fresh process loads them instead of recompiling, even when the
package directory cannot hold a cache (Numba then falls back to the user-wide cache directory)."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nsa_augment.numba_cache import MASKED_NOTICE, NOTICE

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
               PYTHONDONTWRITEBYTECODE="1", NSA_AUGMENT_COMPILE_HELPER="0")  # no helper writing beside the check
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


def test_read_only_install_without_any_writable_cache_location(tmp_path):
    """A read-only install in a container whose home is read-only too: import and run still work."""
    pkg_root = tmp_path / "site"
    shutil.copytree(ROOT / "nsa_augment", pkg_root / "nsa_augment", ignore=shutil.ignore_patterns("__pycache__"))
    for d in [pkg_root / "nsa_augment", *[p for p in (pkg_root / "nsa_augment").rglob("*") if p.is_dir()]]:
        (d / "__pycache__").touch()  # no in-tree cache (a file where the folder would go: stops root too)
    blocked = tmp_path / "no-home"
    blocked.write_text("a file where the user cache folder would go")
    for path in [pkg_root, *pkg_root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)  # and read-only, for non-root runs
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, HOME=str(blocked), XDG_CACHE_HOME=str(blocked), PYTHONPATH=str(pkg_root),
               PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp))
    env.pop("NUMBA_CACHE_DIR", None)
    code = _RUN.format(pkg=str(pkg_root)) + "import numba; print(numba.config.CACHE_DIR)"
    for _ in range(2):  # the second process loads what the first compiled
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().startswith(str(tmp / "nsa-augment-numba-"))
    assert list(tmp.rglob("*.nbi"))
    for path in [pkg_root, *pkg_root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # let pytest clean up


# Records every compile event of the process that runs it, in ``compiled``.
_WATCHED = """
import numpy as np
from numba.core import event
import nsa_augment
compiled = []
class Watch(event.Listener):
    def on_start(self, e):
        compiled.append(getattr(e.data["dispatcher"], "py_func", e.data["dispatcher"]).__qualname__)
    def on_end(self, e):
        pass
event.register("numba:compile", Watch())
"""


# A digest of results, printed by the process that compiles the kernels and by one that loads them: a
# kernel whose arithmetic differs between the two (fast-math sums reordered when compiled in place)
# makes the same call give other bits in a DataLoader worker than in the main process.
_DIGEST = """
import hashlib
def digest():
    h = hashlib.sha256()
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:120, :110]
    rr = (yy - 60) ** 2 + ((xx - 55) / 0.8) ** 2
    ring = (rr < 2500) & (rr > 300)
    for scale, dtype in ((200, np.uint8), (1, np.float32)):
        d, s = ((scale * rng.uniform(0.1, 0.9, (120, 110, 3))).astype(dtype) for _ in range(2))
        for gradients in ("normal", "mixed"):
            h.update(nsa_augment.poisson_blend(d, s, ring, gradients=gradients).tobytes())
        for name in ("mvtec/hazelnut", "mvtec/carpet"):
            image, label, _ = nsa_augment.synthesize(d, s, name, np.random.default_rng(3))
            h.update(image.tobytes())
            h.update(label.tobytes())
    return h.hexdigest()
print("digest", digest())
"""

_COMPILE_AND_LIST = """
import importlib, pkgutil, numba, nsa_augment
import numpy as np
from nsa_augment.precompile import compile_all
print(compile_all()["compiled"])
import nsa_augment.poisson.multigrid as mg  # every multigrid array is float32: one signature per kernel,
# but the float64 residual's, whose solution is one pass's float32 array or the float64 sum of several
print("multigrid-signatures", {k: len(v.signatures) for k, v in vars(mg).items()
                               if isinstance(v, numba.core.dispatcher.Dispatcher)
                               and len(v.signatures) > (2 if k == "residual64" else 1)})
""" + _DIGEST + """
never = []
for info in pkgutil.walk_packages(nsa_augment.__path__, "nsa_augment."):
    if info.name.startswith(("nsa_augment.detection", "nsa_augment.torch")) or info.name.endswith("__main__"):
        continue  # PyTorch code (no Numba kernels), and the command line's entry point
    module = importlib.import_module(info.name)
    for name, obj in vars(module).items():
        if isinstance(obj, numba.core.dispatcher.Dispatcher) and obj.__module__ == info.name and not obj.signatures \
                and obj.targetoptions.get("inline") != "always":  # those are compiled into their callers
            never.append(info.name + "." + name)
print(never)
"""

# What users do, written apart from compile_all: every 2-D preset in every dtype, grey and colour, every label
# mode, gradient and blend mode, both Poisson formulations, blends on other masks, the peers, volumes.
_USE_EVERYTHING = _WATCHED + """
from nsa_augment import methods, presets
from nsa_augment.validation import IMAGE_DTYPES
rng = np.random.default_rng(1)
yy, xx = np.mgrid[:80, :72]
ring = ((yy - 40) ** 2 + (xx - 36) ** 2 < 900) & ((yy - 40) ** 2 + (xx - 36) ** 2 > 100)
for dtype in IMAGE_DTYPES:
    hi = 1.0 if dtype.kind == "f" else 200.0
    img = (hi * rng.uniform(0.2, 0.8, (80, 72, 3))).astype(dtype)
    other = (hi * rng.uniform(0.2, 0.8, (80, 72, 3))).astype(dtype)
    for d, s in ((img, other), (img[..., 0], other[..., 0])):
        for name in presets.names():
            cfg = presets.get(name)
            if cfg.dims == 2:
                nsa_augment.synthesize(d, s, cfg, rng)
        for label in ("binary", "continuous", "intensity", "logistic"):
            for gradients in ("normal", "mixed", "interpolated"):
                cfg = presets.get("mvtec/bottle").replace(label=label, gradients=gradients)
                nsa_augment.synthesize(d, s, cfg, rng)
        for blend in ("paste", "alpha"):
            nsa_augment.synthesize(d, s, presets.get("mvtec/carpet").replace(blend=blend), rng)
        nsa_augment.synthesize(d, s, presets.get("mvtec/wood").replace(poisson="opencv"), rng)
        for gradients in ("normal", "mixed", "interpolated"):
            nsa_augment.poisson_blend(d, s, ring, gradients=gradients)
for method in methods.registry.METHODS:
    methods.registry.generator(method, "mvtec/grid")(img.astype(np.uint8), other.astype(np.uint8), rng)
vol = (100 * rng.uniform(0.2, 0.8, (20, 30, 30))).astype(np.int16)
nsa_augment.synthesize_volume(vol, vol[::-1].copy(), "medical/brain-mri", rng)
""" + _DIGEST + """
print(compiled)
"""


@pytest.mark.slow
def test_compile_command_fills_the_cache_for_everything_users_run(tmp_path):
    """``nsa-augment compile`` reaches every kernel of the package, and afterwards nothing a user runs, in any
    dtype or setting, compiles in a fresh process (each DataLoader worker is one).  It caught the label kernel
    compiling again for another array layout; a narrower test before it caught Numba's typed lists, used from
    the interpreter, compiling their methods in every process (about 2 s before the first masked blend) until
    the multigrid built them in cached code.  The same calls give the same bits in the process that compiled
    the kernels and in one that loaded them (it caught fast-math sums that the two ordered differently), and each
    multigrid kernel compiles once (constant arguments had compiled the sweeps once per literal value)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = subprocess.run([sys.executable, "-c", _COMPILE_AND_LIST], env=env, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    count, never = [line for line in first.stdout.strip().splitlines()
                    if not line.startswith(("digest ", "multigrid-signatures "))][-2:]
    assert int(count) > 20, first.stdout
    assert never == "[]", f"kernels compile_all never reaches: {never}"
    # a constant argument reaches a jitted callee as a literal type: each value compiled it again (about 1.3 s)
    assert "multigrid-signatures {}" in first.stdout.splitlines(), f"kernels compiled more than once: {first.stdout}"
    # the notices: the masked solver's once, the general one at most once (none if the masked solver came first)
    assert first.stderr.count(MASKED_NOTICE) == 1 and first.stderr.count(NOTICE) <= 1, first.stderr[-2000:]
    used = subprocess.run([sys.executable, "-c", _USE_EVERYTHING], env=env, cwd=ROOT, capture_output=True, text=True)
    assert used.returncode == 0, used.stderr[-2000:]
    assert "nsa-augment: compiling" not in used.stderr  # loading from the cache is not compiling
    assert used.stdout.strip().splitlines()[-1] == "[]", f"compiled after nsa-augment compile: {used.stdout}"
    digests = [[line for line in run.stdout.splitlines() if line.startswith("digest ")] for run in (first, used)]
    assert len(digests[0]) == 1 and digests[0] == digests[1], f"compiled and cached kernels differ: {digests}"
    again = subprocess.run([sys.executable, "-m", "nsa_augment", "compile"], env=env, cwd=ROOT, capture_output=True,
                           text=True)
    assert again.returncode == 0 and "nothing to compile" in again.stdout, again.stdout + again.stderr


def test_compile_notices_say_how_long_once_each(monkeypatch, capsys):
    """One line when our first kernel compiles (none for Numba's own helpers), and one more when the masked
    solver's first kernel compiles after it: that one takes 20-40 s, not "a few seconds"."""
    from numba.core import event

    from nsa_augment import numba_cache
    from nsa_augment.methods.nsa import labels
    from nsa_augment.poisson import multigrid

    def compile_of(dispatcher):
        return event.Event("numba:compile", event.EventStatus.START, data={"dispatcher": dispatcher})

    numba_helper = type("Helper", (), {"py_func": int})  # a kernel that is not one of ours (Numba's, say)
    notice = numba_cache._CompileNotice()
    monkeypatch.setattr(numba_cache, "may_start_helper", False)  # these compiles are make-believe
    for first, then, expected in (
        ([labels.median_footprint, numba_helper],
         [multigrid.smooth_restrict, multigrid.pcg, labels.median_footprint], [NOTICE, MASKED_NOTICE]),
        ([numba_helper, multigrid.smooth_restrict], [labels.median_footprint, multigrid.pcg], [MASKED_NOTICE]),
    ):
        monkeypatch.setattr(numba_cache, "_announced", None)
        for dispatcher in first + then:
            notice.on_start(compile_of(dispatcher))
        assert capsys.readouterr().err.splitlines() == expected


def test_a_synthesis_kernel_compiling_starts_the_helper_once(monkeypatch):
    """The helper starts at the first compile of a synthesis kernel on a thread that said which dtype it
    synthesises; not for a blend's kernel, not without that hint, and once per process."""
    import numpy as np
    from numba.core import event

    from nsa_augment import numba_cache
    from nsa_augment.methods.nsa import blending, labels
    from nsa_augment.poisson import kernels

    started = []

    def start(dtype):
        numba_cache.may_start_helper = False
        started.append(dtype)

    monkeypatch.setattr(numba_cache, "start_helper", start)
    monkeypatch.setattr(numba_cache, "may_start_helper", True)
    monkeypatch.setattr(numba_cache, "_expected", threading.local())  # this test's hints end with it
    monkeypatch.setattr(numba_cache, "_announced", "kernels")  # no notice lines here
    notice = numba_cache._CompileNotice()

    def compile_of(dispatcher):
        notice.on_start(event.Event("numba:compile", event.EventStatus.START, data={"dispatcher": dispatcher}))

    numba_cache.expect_synthesis(None)  # a volume, or nothing said
    compile_of(labels.median_footprint)
    numba_cache.expect_synthesis(np.dtype(np.uint16))
    compile_of(kernels.write_solution)  # a Poisson kernel: poisson_blend may be what compiles
    assert started == []
    compile_of(blending._fill_positions)
    compile_of(labels.median_footprint)
    assert started == [np.dtype(np.uint16)]


def test_the_helper_starts_only_where_it_can_help(monkeypatch, tmp_path):
    """Not when turned off, on one CPU, in a frozen application or while another helper holds the lock
    (a stale lock is replaced); otherwise one process, told the dtype, this package and the cache."""
    import numba
    import numpy as np

    from nsa_augment import numba_cache

    lock = tmp_path / "helper.lock"
    calls = []

    class FakeProcess:
        def __init__(self, command, env, cwd, **kwargs):
            calls.append((command, env, cwd))

        def wait(self):
            return 0

    monkeypatch.setattr(numba_cache, "helper", None)  # start_helper sets both: put back after the test
    monkeypatch.setattr(numba_cache, "may_start_helper", True)
    monkeypatch.setattr(numba_cache, "_helper_lock", lambda: str(lock))
    monkeypatch.setattr(numba_cache.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(numba_cache, "_usable_cpus", lambda: 2)
    monkeypatch.delenv(numba_cache.HELPER_VARIABLE, raising=False)
    uint8 = np.dtype(np.uint8)

    monkeypatch.setenv(numba_cache.HELPER_VARIABLE, "0")
    assert numba_cache.start_helper(uint8) is None and not numba_cache.may_start_helper
    monkeypatch.delenv(numba_cache.HELPER_VARIABLE)
    with monkeypatch.context() as m:
        m.setattr(numba_cache, "_usable_cpus", lambda: 1)
        assert numba_cache.start_helper(uint8) is None
    with monkeypatch.context() as m:
        m.setattr(numba_cache.sys, "frozen", True, raising=False)
        assert numba_cache.start_helper(uint8) is None
    lock.touch()  # another helper's, alive
    assert numba_cache.start_helper(uint8) is None and calls == []
    old = lock.stat().st_mtime - numba_cache.HELPER_LOCK_SECONDS - 1
    os.utime(lock, (old, old))  # left by one that died
    assert isinstance(numba_cache.start_helper(uint8), FakeProcess) and lock.exists()
    (command, env, cwd), = calls
    assert command[1:] == ["-m", "nsa_augment.precompile", "uint8"] and cwd == str(ROOT)
    assert env[numba_cache.HELPER_VARIABLE] == "0" and env[numba_cache.HELPER_LOCK_VARIABLE] == str(lock)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # the helper imports this very package
    if numba.config.CACHE_DIR:
        assert env["NUMBA_CACHE_DIR"] == os.path.abspath(numba.config.CACHE_DIR)
    numba_cache.release_lock(str(lock))

    def refuse(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(numba_cache.subprocess, "Popen", refuse)
    assert numba_cache.start_helper(uint8) is None and not lock.exists()  # a failed start leaves no lock


_HELPER_THEN_SYNTHESES = _WATCHED + """
import sys
from nsa_augment.precompile import _VALUES
rng = np.random.default_rng(0)
for dtype in sys.argv[1:]:
    lo, hi = _VALUES[dtype]
    for size in (64, 256):
        for channels in (3, 1):
            image = (lo + (hi - lo) * rng.random((size, size, 3))).astype(dtype)
            image = image if channels == 3 else image[..., 0]
            for preset in ("mvtec/hazelnut", "mvtec/carpet", "mvtec/cable"):
                for _ in range(3):
                    nsa_augment.synthesize(image, image[::-1].copy(), preset, rng)
print(compiled)
"""


@pytest.mark.slow
def test_the_helper_compiles_every_kernel_a_synthesis_needs(tmp_path):
    """After ``compile_synthesis_ahead(dtype)`` (the helper's body) a synthesis of that dtype compiles nothing:
    the helper's small calls give every kernel the argument types a synthesis gives it (textures, objects and
    binary labels; grey and colour; 64 px, and 256 px, which folds some boxes)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NSA_AUGMENT_COMPILE_HELPER="0")
    dtypes = ["uint8", "uint16", "int16", "float32"]
    for dtype in dtypes:
        subprocess.run([sys.executable, "-m", "nsa_augment.precompile", dtype], env=env, cwd=ROOT, check=True)
    used = subprocess.run([sys.executable, "-c", _HELPER_THEN_SYNTHESES, *dtypes], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    assert used.returncode == 0, used.stderr[-2000:]
    assert used.stdout.strip().splitlines()[-1] == "[]", f"compiled after the helper: {used.stdout}"


_COLD_SYNTHESIS = """
import hashlib, numpy as np, nsa_augment
from nsa_augment import numba_cache
rng = np.random.default_rng(0)
d = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
h = hashlib.sha256()
for name in ("mvtec/hazelnut", "mvtec/carpet"):
    image, label, _ = nsa_augment.synthesize(d, d[::-1].copy(), name, np.random.default_rng(7))
    h.update(image.tobytes())
    h.update(label.tobytes())
helper = numba_cache.helper
print("helper", None if helper is None else helper.wait(), numba_cache._usable_cpus())
print("digest", h.hexdigest())
"""


@pytest.mark.slow
def test_a_cold_synthesis_starts_one_helper_and_gives_the_same_results(tmp_path):
    """On a cold cache a synthesis starts the helper (where two CPUs are usable), which ends cleanly, frees its
    lock and writes into this process's cache (the folded transform, which a 48 px synthesis never reaches);
    the results are those of a cold synthesis without it."""
    runs = {}
    for name, switch in (("helper", None), ("alone", "0")):
        tmp = tmp_path / name / "tmp"
        tmp.mkdir(parents=True)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / name / "cache"), TMPDIR=str(tmp))
        env.pop("NSA_AUGMENT_COMPILE_HELPER", None)
        if switch is not None:
            env["NSA_AUGMENT_COMPILE_HELPER"] = switch
        run = subprocess.run([sys.executable, "-c", _COLD_SYNTHESIS], env=env, cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        runs[name] = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
        assert not list(tmp.glob("nsa-augment-compile-helper-*")), "the helper's lock was left behind"
    exit_code, cpus = runs["helper"]["helper"].split()
    assert exit_code == ("0" if int(cpus) >= 2 else "None")
    assert runs["alone"]["helper"].split()[0] == "None"
    folded = list((tmp_path / "helper" / "cache").rglob("*mirror_fold*.nbi"))
    assert bool(folded) == (int(cpus) >= 2)
    assert runs["helper"]["digest"] == runs["alone"]["digest"]
