"""Numba's compiled-kernel cache: a writable place for it, a notice while the kernels compile, and a helper.

Every kernel is ``cache=True``: compiled on first use, then loaded from disk by later processes
(about 0.3 s instead of several seconds).  :func:`prepare` runs when the package is imported, before
any kernel is defined.

Numba compiles one kernel at a time in a process.  When a synthesis first compiles, a helper process
(:func:`~nsa_augment.precompile.compile_synthesis_ahead`) compiles the same kernels from the other end
into the shared cache, and this process loads each kernel it reaches that the helper already wrote:
a cold first synthesis takes about two thirds of the time on two cores (docs/performance.md, *First
call*).  At most one helper runs per user at a time (a lock file), only where two or more CPUs are
usable; ``NSA_AUGMENT_COMPILE_HELPER=0`` turns it off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from numba.core import event

#: Which notice this process printed last: None, "kernels" or "masked" (each at most once).
_announced = None
#: ``NSA_AUGMENT_COMPILE_HELPER=0`` starts no helper (the helper itself runs with it).
HELPER_VARIABLE = "NSA_AUGMENT_COMPILE_HELPER"
#: Tells the helper which lock file to remove when it ends.
HELPER_LOCK_VARIABLE = "NSA_AUGMENT_HELPER_LOCK"
#: A helper's lock older than this is taken to be left by one that died (a cold compile takes seconds).
HELPER_LOCK_SECONDS = 120.0
#: The image dtype a synthesis on this thread is about to render (:func:`expect_synthesis`).
_expected = threading.local()
#: This process's helper (None until one is started).
helper = None
#: Whether this process may still start a helper: at most one try per process (``compile_all``, which
#: compiles everything itself, clears it too).
may_start_helper = True


def _probe():  # pragma: no cover - never called; only compiled-for-caching by prepare()
    return 0


def prepare() -> None:
    """A writable cache folder for Numba, and the first-compile notice."""
    ensure_cache()
    event.register("numba:compile", _CompileNotice())


def ensure_cache() -> None:
    """Give Numba a writable cache before any kernel is defined.

    Numba caches compiled kernels (``cache=True``) next to the package, else in
    the user's cache folder; where neither is writable (a read-only install in a
    non-root container, a read-only home) it refuses to even import a cached
    function.  Then a folder of this user's in the temporary directory serves
    instead (shared by later processes, so the kernels compile once per machine).
    ``NUMBA_CACHE_DIR`` still wins when set.
    """
    import numba

    try:
        numba.njit(cache=True)(_probe)  # the same locator search as every kernel of this package
        return
    except RuntimeError:
        pass
    folder = os.path.join(tempfile.gettempdir(), f"nsa-augment-numba-{_user()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if hasattr(os, "getuid") and os.stat(folder).st_uid != os.getuid():  # someone else's: not ours to trust
            folder = tempfile.mkdtemp(prefix="nsa-augment-numba-")
        numba.config.CACHE_DIR = folder
        numba.njit(cache=True)(_probe)
    except (OSError, RuntimeError):
        raise ImportError("nsa_augment: Numba finds no writable folder to cache its compiled kernels (the package "
                          "folder, the user cache and the temporary folder are read-only): set NUMBA_CACHE_DIR to a "
                          "writable folder") from None


def _user():
    """This user, for names in the shared temporary folder: the uid, or the user name where there is none."""
    return os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def is_ours(ev) -> bool:
    """Whether a ``numba:compile`` event compiles one of this package's kernels (not Numba's own helpers)."""
    dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("nsa_augment.")


#: Modules whose kernels only the multigrid solver of ``poisson_blend`` on a mask that is not a
#: rectangle uses: about thirty kernels, 20-40 s to compile on a 2-core machine, not "a few seconds".
_MASKED_SOLVER = ("nsa_augment.poisson.multigrid",)

NOTICE = "nsa-augment: compiling the Numba kernels on first use (a few seconds, once: they are cached on disk)"
MASKED_NOTICE = ("nsa-augment: compiling the masked Poisson solver on first use (20-40 s on 2 cores, once: cached on "
                 "disk; `nsa-augment compile` does it ahead of time)")


def expect_synthesis(dtype) -> None:
    """Note that this thread synthesises 2-D images of ``dtype`` (None: not 2-D images), for the helper.

    Called by every synthesis entry point when it checks its inputs (a thread-local store): if a
    kernel of the synthesis then compiles, the helper is told which dtype's kernels to compile.
    """
    _expected.dtype = dtype


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _helper_lock() -> str:
    return os.path.join(tempfile.gettempdir(), f"nsa-augment-compile-helper-{_user()}.lock")


def _take_lock(path: str) -> bool:
    """Create the helper's lock file, or find a live one (False); a stale one is replaced."""
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return True
        except FileExistsError:
            try:
                if time.time() - os.stat(path).st_mtime < HELPER_LOCK_SECONDS:
                    return False
                os.unlink(path)
            except OSError:
                return False
        except OSError:  # an unwritable temporary folder: no helper
            return False
    return False


def start_helper(dtype):
    """Start the helper process compiling the synthesis kernels for ``dtype`` (see the module docstring).

    Returns the process, or None where none is started: turned off, fewer than two usable CPUs, no
    interpreter to start (a frozen application), another helper running, or a failed start.
    """
    global helper, may_start_helper
    may_start_helper = False
    if (os.environ.get(HELPER_VARIABLE, "1") == "0" or _usable_cpus() < 2 or getattr(sys, "frozen", False)
            or not sys.executable):
        return None
    lock = _helper_lock()
    if not _take_lock(lock):
        return None
    import numba

    env = dict(os.environ, **{HELPER_VARIABLE: "0", HELPER_LOCK_VARIABLE: lock})
    if numba.config.CACHE_DIR:  # NUMBA_CACHE_DIR, or ensure_cache's fallback: the helper must write there
        env["NUMBA_CACHE_DIR"] = os.path.abspath(numba.config.CACHE_DIR)
    # The helper imports this very package: run from the folder holding it (``-m`` looks there first).
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "nsa_augment.precompile", getattr(dtype, "name", str(dtype))]
    try:
        helper = subprocess.Popen(command, env=env, cwd=package_root, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        release_lock(lock)
        return None
    threading.Thread(target=helper.wait, daemon=True).start()  # reaped when it ends (no zombie)
    return helper


def release_lock(lock: str | None) -> None:
    """Remove the helper's lock file (the helper does when it ends; the starter only if the start failed)."""
    if lock:
        try:
            os.unlink(lock)
        except OSError:
            pass


class _CompileNotice(event.Listener):
    """One line on stderr when the first of our kernels compiles in this process (never for a cache load).

    A cold first call takes a few seconds with no output otherwise; the line says why and that it
    happens once.  The masked solver's kernels take far longer, so their first compile says so in a
    line of its own (unless it was the first line, which then says it).  Numba emits
    ``numba:compile`` only for real compilations.  A synthesis's first kernel to compile also starts
    the compile helper (:func:`start_helper`).
    """

    def on_start(self, ev):
        global _announced
        if not is_ours(ev):
            return
        masked = ev.data["dispatcher"].py_func.__module__ in _MASKED_SOLVER
        if masked and _announced != "masked":
            _announced = "masked"
            print(MASKED_NOTICE, file=sys.stderr, flush=True)
        elif not _announced:
            _announced = "kernels"
            print(NOTICE, file=sys.stderr, flush=True)
        dtype = getattr(_expected, "dtype", None)
        if (may_start_helper and dtype is not None
                and ev.data["dispatcher"].py_func.__module__.startswith("nsa_augment.methods.nsa.")):
            start_helper(dtype)  # a synthesis's first kernel is compiling: the rest are compiled from the other end

    def on_end(self, ev):  # the notice is printed once, at the start
        pass
