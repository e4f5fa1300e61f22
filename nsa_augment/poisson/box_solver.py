"""Exact solver for the 5-point (7-point in 3-D) Poisson equation on a box.

The Laplacian on a box is separable, ``L = L_rows (x) I + I (x) L_cols``.  We
diagonalise ``L_cols`` with a fast sine/cosine transform (scipy.fft, pocketfft,
single-threaded) and solve one tridiagonal system per transformed column mode
along the rows (Numba Thomas algorithm): ``O(n log n)`` per channel, exact up
to floating point.  A volume transforms along rows and columns and solves the
tridiagonal systems along its depth (:func:`solve_box_nd`).

Boundary conditions per side: Dirichlet (value 0; boundary values are already
folded into the right-hand side) or Neumann (the side lies on the image border,
where pixels have no neighbour).  Along the transformed axis:

* Dirichlet-Dirichlet: DST-I, eigenvalues ``2 - 2 cos(pi (k+1) / (n+1))``;
* Neumann-Neumann: DCT-II, eigenvalues ``2 - 2 cos(pi k / n)``;
* mixed: the half-sample Neumann side is removed by mirroring the box into a
  Dirichlet-Dirichlet box of twice the width (exact, twice the cost; only
  patches touching the image's left or right border pay it).

Up to 512 px we multiply by a cached dense eigenbasis instead (one BLAS call on one
thread, exact for any boundary) wherever that is faster: for narrow boxes, and where the
transform length has a large prime factor (256: 257 is prime, and pocketfft falls back to
Bluestein's algorithm, 10x slower) — a measured cost model (:func:`transform_path`).  The
D-D and N-N bases are even or odd about their middle, mode by mode: from :data:`_FOLD_MIN`
px the rows are folded into sums and differences of mirrored columns and multiplied by two
half-size bases, half the multiply-adds (:func:`folded_eigenbasis`).

The same solver is the preconditioner of the masked solver
(:mod:`nsa_augment.poisson.masked_solver`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import scipy.fft

from . import kernels
from .blas import single_threaded_blas
from .kernels import solve_tridiagonal_modes


#: Above this width the O(n^2) eigenbasis product loses to any FFT.
_MAX_DENSE = 512
#: A 2-D box at most this fraction as tall as wide is transformed along its columns (the shorter
#: axis): (3, 100, 300) float32 1.75x faster, (3, 50, 150) 1.4x, (3, 40, 80) 1.0x, (3, 60, 60) 0.87x.
_SHORT_AXIS = 0.75
#: From this width a D-D or N-N dense transform folds its rows (two half-size products): (3 w, w)
#: float32, forward and back, 0.87x at 64 px, 1.23x at 96, 1.6x at 200, 1.75x at 320-470 px.
_FOLD_MIN = 96
#: Where pocketfft beats the product, per transform: ``a + b p < w``, ``p`` the largest prime factor
#: of the transform's length.  The product's time per row grows with the width ``w``, pocketfft's
#: with ``p`` (its passes for a prime factor ``p`` cost ``O(p)`` per value; Bluestein's algorithm
#: for a large one more).  Fitted to ``(3 w, w)`` float32 transforms (forward and back, one BLAS
#: thread) of every third width from 96 to 512 px, the sine and cosine products folded (2026-12-01,
#: 19th session; the mirrored case as fitted in the 18th): the time of the faster path within 0.1%
#: (sine), 0.1% (cosine) and 1% (mirrored) over those widths, and within 0.3% / 0.3% / 0.8% over
#: every fifth width from 97 px, where the 18th session's model for the unfolded products,
#: ``(200, 2)`` and ``(136, 1)``, now took 8% / 13% and 7% / 22% longer (docs/performance-log.md).
_FFT_COST = {"dst": (220, 4), "dct": (84, 3), "mirrored": (250, 6)}


def _largest_prime_factor(n: int) -> int:
    """The largest prime factor of ``n >= 2``."""
    largest, p = 1, 2
    while p * p <= n:
        while n % p == 0:
            largest, n = p, n // p
        p += 1
    return max(largest, n) if n > 1 else largest


def _frequencies(n: int, left_neumann: bool, right_neumann: bool) -> np.ndarray:
    """Angles ``theta_k`` of the 1-D operator's eigenmodes; eigenvalues are ``2 - 2 cos(theta_k)``.

    D-D: ``pi (k+1) / (n+1)`` (DST-I order); N-N: ``pi k / n`` (DCT-II order);
    one Neumann end: ``pi (2k+1) / (2n+1)``.
    """
    k = np.arange(n, dtype=np.float64)
    if not left_neumann and not right_neumann:
        return np.pi * (k + 1) / (n + 1)
    if left_neumann and right_neumann:
        return np.pi * k / n
    return np.pi * (2 * k + 1) / (2 * n + 1)


@lru_cache(maxsize=256)
def eigenvalues(n: int, left_neumann: bool, right_neumann: bool) -> np.ndarray:
    lam = 2.0 - 2.0 * np.cos(_frequencies(n, left_neumann, right_neumann))
    lam.setflags(write=False)
    return lam


class _BasisCache:
    """Least-recently-used eigenbases under a byte budget (thread-safe).

    An entry count would not bound memory: a basis of width n takes 4 n^2 bytes (1 MB at 512),
    so 256 wide ones held 160 MB in every process — every DataLoader worker has its own.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.nbytes = 0
        self.misses = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, build):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value
        value = build(*key)  # outside the lock: another thread may build the same basis meanwhile
        with self._lock:
            self.misses += 1
            if key not in self._items:
                self._items[key] = value
                self.nbytes += _nbytes(value)
                while self.nbytes > self.budget and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self.nbytes -= _nbytes(old)
        return value


def _nbytes(value) -> int:
    """Bytes of a cached basis: one array, or a folded basis's two halves."""
    return value.nbytes if isinstance(value, np.ndarray) else sum(v.nbytes for v in value)


#: Every basis the box solver multiplies by, at most 64 MB per process: the ones a 512 px
#: training run uses (widths up to ~400) fit.
_BASES = _BasisCache(64 << 20)


def folded_eigenbasis(n: int, neumann: bool) -> tuple[np.ndarray, np.ndarray]:
    """The even and odd modes of the D-D (``neumann`` False) or N-N eigenbasis, on half the rows.

    Column ``k`` of :func:`eigenbasis` satisfies ``q[n-1-j, k] = (-1)^k q[j, k]``, so with ``a``,
    ``b`` the rows folded by :func:`~nsa_augment.poisson.kernels.mirror_fold`, ``x @ q`` is
    ``a @ even`` on the even modes and ``b @ odd`` on the odd ones.  Returns ``even`` (float32,
    ``(n - n // 2)`` square: rows ``j < n - n // 2`` of the even columns) and ``odd`` (``n // 2``
    square), both read-only and cached (:data:`_BASES`); the spectrum they give lists the even modes,
    then the odd ones (:func:`folded_eigenvalues`).
    """
    return _BASES.get((int(n), bool(neumann), bool(neumann), "folded"), _folded_eigenbasis)


def _folded_eigenbasis(n: int, left_neumann: bool, right_neumann: bool, _folded: str):
    """Build :func:`folded_eigenbasis`'s halves (the cache calls it with its key: ``_folded`` tells the keys apart)."""
    return (_basis_entries(n, left_neumann, right_neumann, n - n // 2, slice(0, None, 2)),
            _basis_entries(n, left_neumann, right_neumann, n // 2, slice(1, None, 2)))


@lru_cache(maxsize=256)
def folded_eigenvalues(n: int, neumann: bool) -> np.ndarray:
    """:func:`eigenvalues` in the folded spectrum's order: the even modes, then the odd ones."""
    lam = eigenvalues(n, neumann, neumann)
    lam = np.concatenate((lam[0::2], lam[1::2]))
    lam.setflags(write=False)
    return lam


def eigenbasis(n: int, left_neumann: bool, right_neumann: bool) -> np.ndarray:
    """Orthonormal eigenvectors (columns, float32, read-only) of the 1-D operator, in :func:`_frequencies` order.

    Closed forms (second difference with Dirichlet ends, or half-sample Neumann
    ends where the pixel lies on the image border): D-D ``sin(theta (j+1))``,
    N-N ``cos(theta (j + 1/2))`` (DCT-II), D-N ``sin(theta (j+1))`` and N-D
    ``sin(theta (n-j))``.  Cached (:data:`_BASES`).
    """
    return _BASES.get((int(n), bool(left_neumann), bool(right_neumann)), _eigenbasis)


def _eigenbasis(n: int, left_neumann: bool, right_neumann: bool) -> np.ndarray:
    return _basis_entries(n, left_neumann, right_neumann, n, slice(None))


def _basis_entries(n: int, left_neumann: bool, right_neumann: bool, rows: int, modes: slice) -> np.ndarray:
    """Rows ``j < rows`` of :func:`eigenbasis`'s columns ``modes`` (float32, read-only).

    Every entry is ``f(pi m / P) / norm_k``, ``f`` the sine (or the cosine for N-N) and ``m`` the
    integer ``a_j b_k`` modulo ``2 P``: D-D ``(j + 1) (k + 1)``, ``P = n + 1``; N-N
    ``(2 j + 1) k``, ``P = 2 n``; one Neumann end ``(j + 1) (2 k + 1)`` (or ``(n - j) (2 k + 1)``
    for the left one), ``P = 2 n + 1`` — the angles of :func:`_frequencies` times the sample
    positions, as exact fractions of pi.  So one period of ``f`` is evaluated (``2 P`` values) and
    the ``rows x modes`` entries are looked up: 2.2x faster than evaluating every entry at 200-400
    px, and 3-5x for the folded halves, which build only the rows they keep.  The bases missing
    from the cache cost 5-11% of a 512 px carpet example over the first 200 examples of a process
    when evaluated entry by entry (docs/performance-log.md).  The columns' norms are closed forms:
    ``sqrt((n + 1) / 2)`` (D-D), ``sqrt(n / 2)`` (N-N, ``sqrt(n)`` for ``k = 0``), ``sqrt((2 n + 1) / 4)``.
    The float32 entries are those of the entry-by-entry evaluation (normalised numerically), except
    entries within 2e-14 of zero, now exactly zero.
    """
    k = np.arange(n)[modes]
    j = np.arange(rows)
    if left_neumann and right_neumann:
        a, b, period, f = 2 * j + 1, k, 2 * n, np.cos
        norm = np.where(k == 0, np.sqrt(n), np.sqrt(n / 2))
    elif left_neumann or right_neumann:
        a, b, period, f = (n - j if left_neumann else j + 1), 2 * k + 1, 2 * n + 1, np.sin
        norm = np.full(k.size, np.sqrt((2 * n + 1) / 4))
    else:
        a, b, period, f = j + 1, k + 1, n + 1, np.sin
        norm = np.full(k.size, np.sqrt((n + 1) / 2))
    table = f(np.pi * np.arange(2 * period) / period)
    table[[period // 2, 3 * period // 2] if f is np.cos else [0, period]] = 0.0  # exact zeros (period even for cos)
    m = np.multiply.outer(a.astype(np.int64), b.astype(np.int64))
    np.remainder(m, 2 * period, out=m)
    q = (table[m] / norm).astype(np.float32)
    q.setflags(write=False)
    return q


@lru_cache(maxsize=4096)
def transform_path(w: int, left: bool, right: bool) -> str:
    """How :func:`_forward` transforms width ``w`` with these sides.

    Returns ``"dst"``, ``"dct"`` or ``"mirrored"`` (pocketfft), or the cached eigenbasis: ``"folded"``
    (both sides alike, from :data:`_FOLD_MIN` px: :func:`folded_eigenbasis`) or ``"dense"``.
    pocketfft above ``_MAX_DENSE``, and below it where :data:`_FFT_COST` says it is faster.

    Examples
    --------
    >>> [transform_path(w, False, False) for w in (64, 224, 255, 256)], transform_path(224, True, True)
    (['dense', 'folded', 'dst', 'folded'], 'dct')
    """
    fft = "dct" if left and right else ("mirrored" if left or right else "dst")
    if w > _MAX_DENSE:
        return fft
    fft_len = w + 1 if fft == "dst" else (w if fft == "dct" else 2 * w + 1)
    a, b = _FFT_COST[fft]
    if a + b * _largest_prime_factor(fft_len) < w:
        return fft
    return "folded" if left == right and w >= _FOLD_MIN else "dense"


def _forward(rhs: np.ndarray, left: bool, right: bool, overwrite: bool = False):
    """Transform the last axis into the eigenbasis of the 1-D operator.

    Returns the spectrum (contiguous, writable), the eigenvalues and a function
    mapping a spectrum back, which may overwrite the spectrum it is given (always the
    solver's own array: transforming in place saves a fresh output, 10% of a 2048 px
    transform's time).  With ``overwrite`` the forward transform may overwrite ``rhs`` too.
    :func:`transform_path` picks pocketfft's DST-I/DCT-II or the cached eigenbasis (one BLAS product,
    or two half-size ones folded).
    """
    w = rhs.shape[-1]
    path = transform_path(w, left, right)
    if path == "dct":
        spec = scipy.fft.dct(rhs, type=2, axis=-1, norm="ortho", overwrite_x=overwrite)
        return spec, eigenvalues(w, True, True), lambda s: scipy.fft.idct(s, type=2, axis=-1, norm="ortho", overwrite_x=True)
    if path == "mirrored":
        # Mirror about the Neumann side: the half-sample symmetric extension
        # is a Dirichlet-Dirichlet problem of width 2w.
        ext = np.concatenate((rhs[..., ::-1], rhs), axis=-1) if left else np.concatenate((rhs, rhs[..., ::-1]), axis=-1)
        spec = scipy.fft.dst(ext, type=1, axis=-1, norm="ortho", overwrite_x=True)  # ext: our own
        keep = slice(w, None) if left else slice(None, w)
        return spec, eigenvalues(2 * w, False, False), lambda s: scipy.fft.idst(s, type=1, axis=-1, norm="ortho", overwrite_x=True)[..., keep]
    if path == "dst":
        spec = scipy.fft.dst(rhs, type=1, axis=-1, norm="ortho", overwrite_x=overwrite)
        return spec, eigenvalues(w, False, False), lambda s: scipy.fft.idst(s, type=1, axis=-1, norm="ortho", overwrite_x=True)
    shape = rhs.shape
    if path == "folded":
        x = np.ascontiguousarray(rhs.reshape(-1, w), dtype=np.float32)
        halves = _halves(x.shape[0], w)  # the forward's folded rows, then the inverse's products
        own = overwrite or not np.may_share_memory(x, rhs)  # the spectrum may go where the rows were
        spec = _forward_folded(x, left, halves, out=x if own else None)
        return (spec.reshape(shape), folded_eigenvalues(w, left),
                lambda s: _inverse_folded(s.reshape(-1, w), left, halves).reshape(shape))
    lam, q = eigenvalues(w, left, right), eigenbasis(w, left, right)
    spec = (rhs.reshape(-1, w) @ q).reshape(shape)
    return spec, lam, lambda s: (s.reshape(-1, w) @ q.T).reshape(shape)


def _halves(m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch for the folded rows of an (m, n) float32 array: (m, n - n // 2) and (m, n // 2), C-contiguous.

    One allocation for both halves, which the forward transform folds into and the inverse
    multiplies into (until the 22nd session each step took fresh arrays: three (m, n) arrays'
    worth of new memory per box where one does).
    """
    ne = n - n // 2
    flat = np.empty(m * n, np.float32)
    return flat[:m * ne].reshape(m, ne), flat[m * ne:].reshape(m, n - ne)


def _forward_folded(x: np.ndarray, neumann: bool, halves=None, out=None) -> np.ndarray:
    """``x`` (m, n) float32 C-contiguous times the D-D / N-N eigenbasis, in the folded modes' order.

    ``halves``: scratch from :func:`_halves` (allocated here if None).  ``out``: where the spectrum
    goes, (m, n) float32 C-contiguous; it may be ``x`` itself, which is read only while folding.
    """
    m, n = x.shape
    even, odd = folded_eigenbasis(n, neumann)
    ne = even.shape[0]
    halves = _halves(m, n) if halves is None else halves
    kernels.mirror_fold(x, *halves, False)
    spec = np.empty((m, n), np.float32) if out is None else out
    np.matmul(halves[0], even, out=spec[:, :ne])
    np.matmul(halves[1], odd, out=spec[:, ne:])
    return spec


def _inverse_folded(spec: np.ndarray, neumann: bool, halves=None) -> np.ndarray:
    """Inverse of :func:`_forward_folded`, written over ``spec`` (m, n); ``halves`` as there (overwritten)."""
    m, n = spec.shape
    even, odd = folded_eigenbasis(n, neumann)
    ne = even.shape[0]
    halves = _halves(m, n) if halves is None else halves
    np.matmul(spec[:, :ne], even.T, out=halves[0])
    np.matmul(spec[:, ne:], odd.T, out=halves[1])
    return kernels.mirror_fold(spec, *halves, True)[0]


def solve_box(rhs: np.ndarray, top: bool, bottom: bool, left: bool, right: bool, regularize: float = 0.0,
              overwrite: bool = False) -> np.ndarray:
    """Solve ``L u = rhs`` on a rectangle.

    Parameters
    ----------
    rhs : ndarray, float32 or float64, shape (C, h, w)
        Right-hand side per channel.  Not modified, unless ``overwrite``.
    top, bottom, left, right : bool
        True where that side lies on the image border (Neumann), False for a
        Dirichlet side.
    regularize : float
        Replaces the zero eigenvalue when every side is Neumann (the pure
        Neumann problem is singular); only the preconditioner uses this.
    overwrite : bool
        ``rhs`` is the caller's scratch (float32 and contiguous, it is transformed in place).

    Returns
    -------
    ndarray, float32, shape (C, h, w)
    """
    return solve_box_nd(rhs, ((top, bottom), (left, right)), regularize, overwrite)


def solve_box_nd(rhs: np.ndarray, sides, regularize: float = 0.0, overwrite: bool = False) -> np.ndarray:
    """Solve ``L u = rhs`` on a box of any dimension (the (2 d + 1)-point Laplacian).

    Parameters
    ----------
    rhs : ndarray, shape (C, n0, n1, ...)
    sides : ((low, high), ...) per spatial axis
        True where that side lies on the border (Neumann).
    regularize, overwrite
        As for :func:`solve_box`.

    Returns
    -------
    ndarray, float32, shape of ``rhs``
    """
    # The transforms run in float32 (twice as fast as float64 in BLAS and
    # pocketfft); the tridiagonal solves accumulate in float64.  The tests hold
    # the result within 1e-2 intensity levels of an exact float64 sparse solve.
    all_neumann = all(lo and hi for lo, hi in sides)
    if all_neumann and regularize <= 0.0:
        raise ValueError("pure Neumann problem is singular: the region has no Dirichlet boundary")
    if rhs.ndim == 3 and rhs.shape[1] < _SHORT_AXIS * rhs.shape[2]:
        # The transform costs up to O(width) per pixel (the dense product), the tridiagonal solve O(1):
        # a wide box is transformed along its columns instead, one copy each way.
        turned = np.ascontiguousarray(rhs.transpose(0, 2, 1), dtype=np.float32)
        return np.ascontiguousarray(solve_box_nd(turned, sides[::-1], regularize, True).transpose(0, 2, 1))
    C, n0 = rhs.shape[:2]
    last = rhs.ndim - 1
    with single_threaded_blas():  # the eigenbasis products: small, and slower on many threads
        spec = np.ascontiguousarray(rhs, dtype=np.float32)
        inverses, lams = [], []
        for axis, (lo, hi) in zip(range(2, rhs.ndim), sides[1:]):
            moved = spec if axis == last else np.ascontiguousarray(np.moveaxis(spec, axis, -1))
            # In place wherever the array is the solver's own: a copy made above, or the caller's scratch.
            own = overwrite or not np.may_share_memory(moved, rhs)
            moved, lam_axis, inverse = _forward(moved, lo, hi, own)  # a mirrored axis comes back twice as long
            spec = moved if axis == last else np.moveaxis(moved, -1, axis)
            inverses.append((axis, inverse))
            lams.append(np.asarray(lam_axis))
        lam = lams[0]
        for extra in lams[1:]:  # eigenvalues of the trailing axes add up: one per mode of the grid
            lam = (lam[:, None] + extra[None, :]).reshape(-1)
        if all_neumann:
            lam = lam.copy()
            lam[np.argmin(lam)] = regularize
        spectral_shape = spec.shape
        spec = np.ascontiguousarray(spec, dtype=np.float32).reshape(C, n0, -1)
        solve_tridiagonal_modes(spec, lam, sides[0][0], sides[0][1], np.empty((n0, spec.shape[2])))
        spec = spec.reshape(spectral_shape)
        for axis, inverse in reversed(inverses):
            moved = spec if axis == last else np.ascontiguousarray(np.moveaxis(spec, axis, -1))
            moved = inverse(moved)
            spec = moved if axis == last else np.moveaxis(moved, -1, axis)
        return np.ascontiguousarray(spec)
