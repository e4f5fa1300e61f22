"""Every Numba kernel of the package compiled into the cache ahead of time (``nsa-augment compile``).

Without it each kernel compiles on first use, once per environment and image dtype
(:mod:`nsa_augment.numba_cache`); with it, run once while building a container image or a shared
environment, no later process compiles anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np
from numba.core import event

from . import numba_cache
from .methods import registry
from .methods.nsa import presets
from .methods.nsa.blending import blend_patch, extract_patch
from .methods.nsa.labels import make_label
from .methods.nsa.objects import spatial_object_mask
from .methods.nsa.sampling import box_slices
from .methods.nsa.synthesis import synthesize, synthesize_volume
from .numba_cache import is_ours
from .poisson import box_solver, kernels, poisson_blend, poisson_blend_volume, seamless_clone
from .validation import IMAGE_DTYPES


def compile_all(volumes: bool = True) -> dict:
    """Compile (or load) every kernel of this package, for every image dtype, into the cache now.

    For a container image or a shared environment: run it once while building (``nsa-augment
    compile``), and no later process compiles anything — not the first masked blend (whose
    multigrid solver takes 20-40 s to compile on a 2-core machine), not a 16-bit scan, not a
    DataLoader worker.  Small calls reach each kernel with each type it is compiled for: synthesis
    with texture and object presets, every label mode and both Poisson formulations, in every
    accepted dtype (uint8, uint16, int16, float32), grey and colour; Poisson blends on a rectangle
    and on another mask, normal and mixed; OpenCV's formulation; the peer methods; and, with
    ``volumes``, 3-D synthesis and blends.

    Returns
    -------
    dict
        ``compiled``: kernel versions compiled now, one per kernel and argument types (0 when the
        cache held them all); ``seconds``; ``cache``: where the compiled kernels are kept.
    """
    counter = _CompileCount()
    numba_cache.may_start_helper = False  # every kernel compiles here anyway: a helper would only repeat some
    event.register("numba:compile", counter)
    start = time.perf_counter()
    try:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:64, :64]
        ellipse = (yy - 30) ** 2 + ((xx - 33) / 1.3) ** 2 < 500  # the multigrid, several levels deep
        rect = (yy >= 8) & (yy < 40) & (xx >= 10) & (xx < 50)
        configs = [presets.get("mvtec/carpet"), presets.get("mvtec/hazelnut"),
                   presets.get("mvtec/cable").replace(label="binary"),
                   presets.get("mvtec/carpet").replace(label="intensity", poisson="opencv")]
        for dtype in IMAGE_DTYPES:
            image = _image(dtype, 64)
            other = image[::-1].copy()
            for dst, src in ((image, other), (image[..., 0], other[..., 0])):  # colour and grey
                for cfg in configs:
                    _until_patched(lambda: synthesize(dst, src, cfg, rng))
                for mask in (rect, ellipse):
                    for gradients in ("normal", "mixed"):
                        poisson_blend(dst, src, mask, gradients=gradients)
                if dtype in (np.uint8, np.float32):  # what seamless_clone takes
                    seamless_clone(src, dst, ellipse, (32, 33))
            _masked_solution_writers(dtype)
        _folded_transform()
        u8 = _image(np.uint8, 64)
        other_u8 = u8[::-1].copy()
        for method in registry.METHODS:
            registry.generator(method, "mvtec/carpet")(u8, other_u8, rng)
        if volumes:
            zz, yy, xx = np.mgrid[:32, :40, :40]
            head = ((zz - 16) / 14.0) ** 2 + ((yy - 20) / 17.0) ** 2 + ((xx - 20) / 17.0) ** 2 < 1  # an object
            texture = head * (0.5 + 0.3 * np.sin(yy / 4.0) * np.cos(xx / 5.0 + zz / 6.0))
            ball = (zz - 16) ** 2 + (yy - 20) ** 2 + (xx - 19) ** 2 < 80
            box = (zz >= 4) & (zz < 28) & (yy >= 5) & (yy < 35) & (xx >= 6) & (xx < 34)
            for dtype in IMAGE_DTYPES:
                volume = ((1.0 if dtype.kind == "f" else 1000.0) * texture).astype(dtype)
                _until_patched(lambda: synthesize_volume(volume, volume[::-1].copy(), "medical/brain-mri", rng))
                for mask in (ball, box):  # conjugate gradients, the box solver
                    poisson_blend_volume(volume, volume[::-1].copy(), mask)
    finally:
        event.unregister("numba:compile", counter)
    return {"compiled": counter.compiled, "seconds": time.perf_counter() - start, "cache": cache_folder()}


def compile_synthesis_ahead(dtype) -> None:
    """Compile (or load) the 2-D synthesis kernels for images of ``dtype``, in the reverse of their order of use.

    The body of the helper process that :mod:`nsa_augment.numba_cache` starts when a synthesis first
    compiles in a process: while that process compiles its kernels in the order a synthesis meets
    them (object masks, the patch's resampling, the box solve, the label), this one compiles them
    from the other end into the shared cache, and the first process loads each kernel it reaches
    that the helper already wrote, instead of compiling it.  Small calls of the functions a
    synthesis calls, so every kernel gets the argument types a synthesis gives it (tested: a
    synthesis after this compiles nothing).

    Parameters
    ----------
    dtype : numpy dtype or name
        One of the image dtypes (uint8, uint16, int16, float32); images are (H, W, C) inside, grey
        or colour alike.
    """
    dtype = np.dtype(dtype)
    image = _image(dtype, 40)
    other = np.ascontiguousarray(image[::-1])
    box = (8, 30, 10, 32)
    region = np.zeros(image.shape[:2], bool)
    region[box_slices(box)] = True
    make_label(image, other, region, "logistic")  # the change map, the 5x5 binary median, the disk median
    work = image.copy()
    blend_patch(work, np.ascontiguousarray(other[7:31, 9:33]), box, blend="poisson", gradients="mixed", factor=1.0,
                clip=dtype.kind == "f")  # the box solve's right-hand side, tridiagonal solves and writing
    _folded_transform()  # boxes from 96 px: every synthesis at 256 px meets one
    extract_patch(other, box, (20, 24), margin=1)  # the patch's positions and resampling
    spatial_object_mask(image, ((0, 20),))  # the object votes and the 7x7 binary median


def _masked_solution_writers(dtype) -> None:
    """The masked blend's writer for both forms of the solve's solution, into an image of ``dtype``.

    The multigrid solve returns its one float32 pass's own array, or the float64 sum of the passes
    when it had to refine (:meth:`~nsa_augment.poisson.multigrid.Hierarchy.solve`): float images as a
    rule (their 16-bit error goal lies near float32's resolution), integer images only on some masks
    and images, which the small blends above need not hit.  So both are compiled here, each as
    the solve returns it (the inner box of a padded array).
    """
    out = np.zeros((2, 2, 3), dtype)
    for solution_dtype in (np.float32, np.float64):
        solution = np.zeros((3, 4, 4), solution_dtype)[:, 1:3, 1:3]
        kernels.write_solution(out, solution, np.ones((2, 2), bool), 0, 0, *kernels.output_range(dtype))


def _folded_transform() -> None:
    """The box solver's folded products (:func:`~nsa_augment.poisson.box_solver.folded_eigenbasis`).

    They fold boxes from 96 px wide, which the 64 px calls above never solve; every image dtype
    reaches them through the same float32 right-hand side.
    """
    width = box_solver._FOLD_MIN
    box_solver.solve_box(np.ones((1, width, width), np.float32), False, False, False, False)


#: Each image dtype's test values: its whole range, a CT window for int16, [0, 1] for float32.
_VALUES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-1000.0, 1000.0), "float32": (0.0, 1.0)}


def _image(dtype, size: int) -> np.ndarray:
    """A smooth colour image (size, size, 3) of ``dtype``, from 0.2 to 0.8 of its :data:`_VALUES` range."""
    lo, hi = _VALUES[np.dtype(dtype).name]
    yy, xx = np.mgrid[:size, :size]
    smooth = 0.5 + 0.3 * np.sin(yy / 7.0)[..., None] * np.cos(xx[..., None] / 9.0 + np.arange(3))
    return (lo + (hi - lo) * smooth).astype(dtype)


def _until_patched(synthesize_once, attempts: int = 20) -> None:
    """Synthesise until a plan places a patch (a plan may place none: then the blend kernels would not run)."""
    for _ in range(attempts):
        if synthesize_once()[2].patches:
            return


class _CompileCount(event.Listener):
    """Counts this package's kernel compilations (not cache loads, not Numba's own helpers)."""

    def __init__(self):
        self.compiled = 0

    def on_start(self, ev):
        pass

    def on_end(self, ev):
        self.compiled += is_ours(ev)


def cache_folder() -> str:
    """Where this package's compiled kernels are kept (Numba's cache locator, asked for one kernel)."""
    if numba.config.CACHE_DIR:  # NUMBA_CACHE_DIR, or the fallback of ensure_cache
        return str(numba.config.CACHE_DIR)
    path = getattr(getattr(kernels.assemble_rhs_box, "_cache", None), "_cache_path", None)
    if not path:
        return "Numba's default cache folder"
    package = Path(__file__).resolve().parent
    if Path(path).resolve().is_relative_to(package):  # Numba's in-tree cache: one folder per module
        return f"{package}/**/__pycache__ (next to the package)"
    return str(path)


if __name__ == "__main__":  # the helper process of numba_cache: ``python -m nsa_augment.precompile DTYPE``
    import os
    import sys

    from .numba_cache import HELPER_LOCK_VARIABLE, release_lock

    try:
        compile_synthesis_ahead(sys.argv[1])
    finally:
        release_lock(os.environ.get(HELPER_LOCK_VARIABLE))
