"""Numba's compiled-kernel cache: a writable place for it, and a notice while the kernels compile.

Every kernel is ``cache=True``: compiled on first use, then loaded from disk by later processes
(about 0.3 s instead of several seconds).  :func:`prepare` runs when the package is imported, before
any kernel is defined.
"""

from __future__ import annotations

import os
import sys
import tempfile

from numba.core import event

#: Which notice this process printed last: None, "kernels" or "masked" (each at most once).
_announced = None


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
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = os.path.join(tempfile.gettempdir(), f"nsa-augment-numba-{uid}")
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


class _CompileNotice(event.Listener):
    """One line on stderr when the first of our kernels compiles in this process (never for a cache load).

    A cold first call takes a few seconds with no output otherwise; the line says why and that it
    happens once.  The masked solver's kernels take far longer, so their first compile says so in a
    line of its own (unless it was the first line, which then says it).  Numba emits
    ``numba:compile`` only for real compilations.
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

    def on_end(self, ev):  # the notice is printed once, at the start
        pass
