"""Numba kernels of the Poisson solver.

All kernels are small, typed by their first call, ``cache=True`` and
single-threaded: parallelism comes from DataLoader workers, and threaded kernels
do not mix with forked workers.  Each has a plain NumPy/SciPy counterpart in
:mod:`nsa_augment.poisson.reference` that the tests compare against.

Conventions shared by the kernels
---------------------------------
* The *box* is the bounding box of the mask, ``[y0, y1) x [x0, x1)`` in
  destination coordinates.  Unknowns live on the box; pixels of the box outside
  the mask are zero in every box-shaped array.
* ``dst`` is the full destination as (H, W, C); ``src`` is the source as
  (h, w, C) placed at ``(oy, ox)`` in the destination; ``mask`` is (h, w).
* Image border: a pixel's neighbours outside the image do not exist (natural,
  zero-flux Neumann condition); its degree counts only in-image neighbours.
"""

from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

#: Guidance modes understood by :func:`assemble_rhs`.
NORMAL, MIXED, INTERPOLATED = 0, 1, 2


@nb.njit(cache=True, nogil=True, inline="always")
def _edge(dp, dq, sp, sq, q_src, q_out, mode, factor):
    """Contribution of the edge p -> q to the right-hand side at p.

    Branch-free so that the loops over pixels vectorise: ``q_src`` is 1.0 where
    ``q`` has a source value, ``q_out`` is 1.0 where ``q`` is not masked.
    """
    gd = dp - dq
    gs = sp - sq
    if mode == 0:
        v = gs
    elif mode == 1:
        v = gs if abs(gs) > abs(gd) else gd
    else:
        v = factor * gs + (1.0 - factor) * gd
    return q_src * v + (1.0 - q_src) * gd + q_out * dq


@nb.njit(cache=True, nogil=True)
def _fill_ring_row(dst, src, mask, oy, ox, y0, x0, r, D, S, src_w, out_w):
    """Row ``r`` of the box's one-pixel ring (box row ``r - 1``) as flat runs of ``(bw + 2) C`` values.

    ``D``: the destination's values (replicated beyond the image border); ``S``: the source's (0
    where it has none); ``src_w``: 1 where the pixel has a source value; ``out_w``: 1 where it is
    not masked.  All float32, one value per pixel and channel (pixel by pixel, then channel), so
    that :func:`assemble_rhs`'s sums run with unit stride.  The in-image and in-source columns are
    copied from the flat image rows through views that start at 0, with unsigned indices (no
    negative-index wraparound test), so that the copies vectorise.
    """
    H, W, C = dst.shape
    h, w = mask.shape
    n = D.size // C  # bw + 2 pixels
    y = min(max(y0 - 1 + r, 0), H - 1)
    drow = dst[y].reshape(W * C)
    ja, jb = max(0, 1 - x0), min(n, W + 1 - x0)  # the ring's columns in the image: x0 - 1 + j in [0, W)
    Dv, dv = D[ja * C:], drow[(x0 - 1 + ja) * C:]
    for k in range(np.uint64((jb - ja) * C)):
        Dv[k] = dv[k]
    for j in range(0, ja):
        for c in range(C):
            D[j * C + c] = drow[c]
    for j in range(jb, n):
        for c in range(C):
            D[j * C + c] = drow[(W - 1) * C + c]
    S[:] = 0.0
    src_w[:] = 0.0
    out_w[:] = 1.0
    sy = y0 - 1 + r - oy
    if 0 <= sy < h:
        sa, sb = max(0, ox + 1 - x0), min(n, ox + 1 - x0 + w)  # ... in the source: x0 - 1 + j - ox in [0, w)
        if sa < sb:
            Sv, sv, wv = S[sa * C:], src[sy].reshape(w * C)[(x0 - 1 + sa - ox) * C:], src_w[sa * C:]
            for k in range(np.uint64((sb - sa) * C)):
                Sv[k] = sv[k]
                wv[k] = 1.0
            mv, ov, one = mask[sy, x0 - 1 + sa - ox:], out_w[sa * C:], np.float32(1.0)
            for j in range(np.uint64(sb - sa)):
                o = one - np.float32(mv[j])
                for c in range(C):
                    ov[j * C + c] = o


@nb.njit(cache=True, nogil=True)
def assemble_rhs(dst, src, mask, oy, ox, y0, y1, x0, x1, mode, factor):
    """Right-hand side of the masked Poisson system on the box.

    For a masked pixel ``p`` and each in-image neighbour ``q``::

        rhs[p] += v_pq                      (guidance along the edge p -> q)
        rhs[p] += dst[q]   if q is not masked (Dirichlet boundary value)

    ``v_pq`` is ``s_p - s_q`` (NORMAL), the stronger of ``s_p - s_q`` and
    ``d_p - d_q`` per channel (MIXED), or ``factor*(s_p - s_q) +
    (1-factor)*(d_p - d_q)`` (INTERPOLATED).  Where ``q`` lies outside the
    source array there is no source gradient and ``d_p - d_q`` is used.
    ``dst`` and ``src`` hold one of the image dtypes (uint8, uint16, int16,
    float32: ``validation.IMAGE_DTYPES``), whose values the float32 copies below
    hold exactly; a float64 image would be rounded.

    Returns
    -------
    rhs : float64 array (C, y1-y0, x1-x0)
    inside : bool array (y1-y0, x1-x0), the mask on the box
    """
    H, W, C = dst.shape
    bh, bw = y1 - y0, x1 - x0
    # Three rows of the ring at a time (above, this, below), each a flat run of (bw + 2) C float32
    # values (:func:`_fill_ring_row`), filled once and used by three box rows; 0/1 weights instead of
    # branches, so that the sums run with unit stride and vectorise.  Planar copies of the whole box
    # (before the 19th session) read the images with stride C and wrote four box-sized arrays per call.
    n = (bw + 2) * C
    D = np.empty((3, n), np.float32)  # exact: every image dtype's values are float32 values
    S = np.empty((3, n), np.float32)
    src_w = np.empty((3, n), np.float32)
    out_w = np.empty((3, n), np.float32)
    total = np.empty(n)
    rhs = np.empty((C, bh, bw))
    inside = np.empty((bh, bw), np.bool_)
    for r in range(2):
        _fill_ring_row(dst, src, mask, oy, ox, y0, x0, r, D[r], S[r], src_w[r], out_w[r])
    Cu, end = np.uint64(C), np.uint64(n - C)
    f8 = np.float64
    for i in range(bh):
        a, m, b = i % 3, (i + 1) % 3, (i + 2) % 3  # ring rows i (above), i + 1 (this row), i + 2 (below)
        _fill_ring_row(dst, src, mask, oy, ox, y0, x0, i + 2, D[b], S[b], src_w[b], out_w[b])
        Dn, D0, Ds, Sn, S0, Ss = D[a], D[m], D[b], S[a], S[m], S[b]
        wn, w0, ws, on, o0, os_ = src_w[a], src_w[m], src_w[b], out_w[a], out_w[m], out_w[b]
        # The mode is a run-time value: a call site per constant mode (LLVM specialising the loop
        # per mode) compiled 1.7 s longer on first use and ran no faster (an earlier session).
        for t in range(Cu, end):  # north, south, west, east: the sums' order
            dp, sp = f8(D0[t]), f8(S0[t])
            acc = _edge(dp, f8(Dn[t]), sp, f8(Sn[t]), f8(wn[t]), f8(on[t]), mode, factor)
            acc += _edge(dp, f8(Ds[t]), sp, f8(Ss[t]), f8(ws[t]), f8(os_[t]), mode, factor)
            acc += _edge(dp, f8(D0[t - Cu]), sp, f8(S0[t - Cu]), f8(w0[t - Cu]), f8(o0[t - Cu]), mode, factor)
            acc += _edge(dp, f8(D0[t + Cu]), sp, f8(S0[t + Cu]), f8(w0[t + Cu]), f8(o0[t + Cu]), mode, factor)
            total[t] = (1.0 - f8(o0[t])) * acc
        y = y0 + i
        for j in range(bw):
            inside[i, j] = o0[(j + 1) * C] == 0.0
        # Edges leaving the image do not exist.  Their replicated dst gave d_p - d_q = 0, but an
        # unmasked q also added dst[q] = dst[p]: undo that for masked pixels on the image border (a q
        # beyond the image never has a source value nor is masked).
        edge_row = y == 0 or y == H - 1
        step = 1 if edge_row else max(bw - 1, 1)  # a row's every pixel, else its first and last
        for j in range(0, bw, step):
            x = x0 + j
            if inside[i, j] and (edge_row or x == 0 or x == W - 1):
                n_out = (y == 0) + (y == H - 1) + (x == 0) + (x == W - 1)
                for c in range(C):
                    total[(j + 1) * C + c] -= n_out * f8(D0[(j + 1) * C + c])
        for c in range(C):
            out = rhs[c, i]
            for j in range(bw):
                out[j] = total[(j + 1) * C + c]
    return rhs, inside


@nb.njit(cache=True, nogil=True)
def _guidance(dp, dq, sp, sq, has_src, mode, factor):
    """Guidance along one edge p -> q (``v_pq`` of :func:`assemble_rhs`)."""
    gd = dp - dq
    if not has_src:
        return gd
    gs = sp - sq
    if mode == 0:
        return gs
    if mode == 1:
        return gs if abs(gs) > abs(gd) else gd
    return factor * gs + (1.0 - factor) * gd


def _difference_float(value):
    """``value`` as the float type in which :func:`assemble_rhs_box` sums an image's differences."""
    return np.float64(value)


def _difference_zero(value):
    """0 in :func:`_difference_float`'s type for ``value``."""
    return np.float64(0.0)


def _difference_cast(value):
    # 8- and 16-bit integers: float32, where the interior's sums of four differences (at most
    # 4 x 65535 < 2**24) are exact, as in float64, and twice as many lanes vectorise (with a float32
    # row: 1.3-1.5x the kernel at 90 px).  float32 images: float64, whose differences are exact.
    return np.float32 if isinstance(value, types.Integer) and value.bitwidth <= 16 else np.float64


@overload(_difference_float)
def _difference_float_overload(value):
    cast = _difference_cast(value)
    return lambda value: cast(value)


@overload(_difference_zero)
def _difference_zero_overload(value):
    cast = _difference_cast(value)
    return lambda value: cast(0.0)


@nb.njit(cache=True, nogil=True)
def assemble_rhs_box(dst, src, d2, s2, oy, ox, y0, y1, x0, x1, mode, factor, rhs, row):
    """:func:`assemble_rhs` for a mask that is the whole rectangle ``[y0, y1) x [x0, x1)``.

    NSA always solves on full patch rectangles; this kernel needs no mask or
    weight arrays, compiles in a fraction of the general one's time and runs
    faster.  Same definition: for every box pixel ``p`` and in-image neighbour
    ``q``, ``rhs[p] += v_pq``, plus ``dst[q]`` when ``q`` lies outside the box.
    The source must cover the box (its neighbours beyond the box may be missing).

    ``d2``, ``s2``: the same images as flat rows, ``(H, W * C)`` and ``(h, w * C)`` (views,
    reshaped by the caller: a reshape here costs compile time).  ``rhs``: float32 or float64
    (C, y1 - y0, x1 - x0), filled (each value summed in float64, or in float32 where that is exact:
    :func:`_difference_float`) and returned; ``row``: scratch of ``(x1 - x0) * C`` values of
    ``rhs``'s dtype (the interior's sums pass through it; float32 for a float32 ``rhs`` is half the
    bytes and rounds as ``rhs`` does).  Both are allocated by the caller: an allocation here
    compiles NumPy's array constructor into the kernel, a longer first call.
    """
    H, W, C = dst.shape
    h, w = src.shape[0], src.shape[1]
    bh, bw = y1 - y0, x1 - x0
    # The interior (all four neighbours in the box, so in the source): each row as one flat run of
    # bw * C values of the (H, W * C) images, a loop for NORMAL and one for MIXED, unsigned indices
    # (no negative-index wraparound test), so that LLVM vectorises them; then spread to the channel
    # planes.  Every value is summed in the perimeter's order (north, south, west, east): the same
    # float64 result.
    # INTERPOLATED (the PII peer, not NSA) takes the per-pixel path below everywhere: its own loop
    # cost 0.2 s more of every cold first call.
    n, Cu = np.uint64(bw * C), np.uint64(C)
    a, sa = x0 * C, (x0 - ox) * C
    f, zero = _difference_float, _difference_zero(s2[0, 0])  # float32 or float64 by the images' dtype
    for i in range(1, bh - 1 if mode != 2 else 1):
        y, sy = y0 + i, y0 + i - oy
        d, dn, ds = d2[y, a:], d2[y - 1, a:], d2[y + 1, a:]
        s, sn, ss = s2[sy, sa:], s2[sy - 1, sa:], s2[sy + 1, sa:]
        if mode == 0:
            for k in range(Cu, n - Cu):
                sp = f(s[k])
                row[k] = zero + (sp - f(sn[k])) + (sp - f(ss[k])) + (sp - f(s[k - Cu])) + (sp - f(s[k + Cu]))
        else:
            for k in range(Cu, n - Cu):
                dp, sp = f(d[k]), f(s[k])
                v = zero
                gd, gs = dp - f(dn[k]), sp - f(sn[k])
                v += gs if abs(gs) > abs(gd) else gd
                gd, gs = dp - f(ds[k]), sp - f(ss[k])
                v += gs if abs(gs) > abs(gd) else gd
                gd, gs = dp - f(d[k - Cu]), sp - f(s[k - Cu])
                v += gs if abs(gs) > abs(gd) else gd
                gd, gs = dp - f(d[k + Cu]), sp - f(s[k + Cu])
                v += gs if abs(gs) > abs(gd) else gd
                row[k] = v
        for c in range(C):
            out = rhs[c, i]
            for j in range(1, bw - 1):
                out[j] = row[j * C + c]
    # The perimeter, pixel by pixel: its neighbours may lie beyond the box, the image or the source.
    for i in range(bh):
        y = y0 + i
        sy = y - oy
        for j in range(0, bw, 1 if i == 0 or i == bh - 1 or mode == 2 else max(bw - 1, 1)):
            x = x0 + j
            sx = x - ox
            for c in range(C):
                dp = np.float64(dst[y, x, c])
                sp = np.float64(src[sy, sx, c])
                acc = 0.0
                if y > 0:
                    has = sy - 1 >= 0
                    acc += _guidance(dp, np.float64(dst[y - 1, x, c]), sp, np.float64(src[sy - 1, sx, c]) if has else 0.0,
                                     has, mode, factor)
                    if i == 0:
                        acc += dst[y - 1, x, c]
                if y < H - 1:
                    has = sy + 1 < h
                    acc += _guidance(dp, np.float64(dst[y + 1, x, c]), sp, np.float64(src[sy + 1, sx, c]) if has else 0.0,
                                     has, mode, factor)
                    if i == bh - 1:
                        acc += dst[y + 1, x, c]
                if x > 0:
                    has = sx - 1 >= 0
                    acc += _guidance(dp, np.float64(dst[y, x - 1, c]), sp, np.float64(src[sy, sx - 1, c]) if has else 0.0,
                                     has, mode, factor)
                    if j == 0:
                        acc += dst[y, x - 1, c]
                if x < W - 1:
                    has = sx + 1 < w
                    acc += _guidance(dp, np.float64(dst[y, x + 1, c]), sp, np.float64(src[sy, sx + 1, c]) if has else 0.0,
                                     has, mode, factor)
                    if j == bw - 1:
                        acc += dst[y, x + 1, c]
                rhs[c, i, j] = acc
    return rhs


# error_model="numpy": a division by zero gives inf instead of raising, so the pivots' loop carries no
# zero test and vectorises (1.5-1.7x faster for (3, 40..150, 40..150), same values; about 0.06 s more
# compile for the vectorised loop).
# No pivot is zero: the eigenvalues are >= 0 and only the singular all-Neumann problem, which
# solve_box_nd rejects or regularises, reaches a zero one.
@nb.njit(cache=True, nogil=True, error_model="numpy")
def solve_tridiagonal_modes(rhs, lam, top_neumann, bottom_neumann, inv):
    """Solve ``(T + lam[k] I) u[:, k] = rhs[c, :, k]`` for every channel and mode.

    ``T`` is the 1-D second-difference matrix along the rows (diagonal 2, or 1 at
    a Neumann end; off-diagonals -1).  Thomas algorithm, vectorised over the
    modes ``k`` (the contiguous last axis).  ``rhs`` is (C, n, K); solved in place
    and returned.  ``inv`` is float64 (n, K) scratch from the caller: the inverse pivots.  With
    off-diagonals -1 the modified super-diagonal is ``c'_i = -inv_i``, so it needs no array of its
    own (until the 20th session it had one: the same values, twice the scratch; 1.5-1.7x slower).
    """
    C, n, K = rhs.shape
    for k in range(K):
        b = (1.0 if top_neumann else 2.0) + lam[k]
        if n == 1 and bottom_neumann:
            b -= 1.0
        inv[0, k] = 1.0 / b
    for i in range(1, n):
        last = i == n - 1
        for k in range(K):
            b = (1.0 if (last and bottom_neumann) else 2.0) + lam[k]
            inv[i, k] = 1.0 / (b - inv[i - 1, k])  # b - a c'_{i-1}, a = -1, c'_{i-1} = -inv_{i-1}
    for c in range(C):
        r = rhs[c]
        for k in range(K):
            r[0, k] = r[0, k] * inv[0, k]
        for i in range(1, n):
            for k in range(K):
                r[i, k] = (r[i, k] + r[i - 1, k]) * inv[i, k]
        for i in range(n - 2, -1, -1):
            for k in range(K):
                r[i, k] += inv[i, k] * r[i + 1, k]  # r_i - c'_i r_{i+1}
    return rhs


# One kernel both ways: a second one took 0.1 s more to compile (0.23 s against 0.33 s for the
# pair, ad hoc), and a user's first box 96 px or wider pays that compile.
@nb.njit(cache=True, nogil=True)
def mirror_fold(x, even, odd, unfold):
    """Fold rows about their middle, or (``unfold``) undo it.

    Folding: ``even[:, j] = x[:, j] + x[:, n-1-j]`` and ``odd[:, j] = x[:, j] - x[:, n-1-j]``
    for ``j < n // 2``, and with ``n`` odd ``even``'s last column is the middle column of ``x``.
    Unfolding writes ``x``: ``x[:, j] = even[:, j] + odd[:, j]``, ``x[:, n-1-j] = even[:, j] - odd[:, j]``,
    and the middle column ``even[:, n // 2]``.  ``x`` (m, n), ``even`` (m, n - n // 2) and ``odd``
    (m, n // 2) are float32 and C-contiguous.  A basis whose columns are even or odd about the
    middle (the sine and cosine eigenbases of Dirichlet-Dirichlet and Neumann-Neumann ends) maps
    the folded halves to the even and odd modes with half-size products
    (:func:`~nsa_augment.poisson.box_solver.folded_eigenbasis`).  Returns ``x``, ``even``, ``odd``.
    """
    m, n = x.shape
    half = n // 2
    for r in range(m):
        xr, er, orow = x[r], even[r], odd[r]
        if unfold:
            for j in range(half):
                xr[j] = er[j] + orow[j]
                xr[n - 1 - j] = er[j] - orow[j]
            if n & 1:
                xr[half] = er[half]
        else:
            for j in range(half):
                u, v = xr[j], xr[n - 1 - j]
                er[j] = u + v
                orow[j] = u - v
            if n & 1:
                er[half] = xr[half]
    return x, even, odd


#: Rounding modes of :func:`write_solution`.
NO_ROUNDING, ROUND_HALF_UP, TRUNCATE = 0, 1, 2


@lru_cache(maxsize=64)
def output_range(dtype, *, truncate: bool = False, clip: bool = False) -> tuple[float, float, int]:
    """``(lo, hi, rounding)`` for :func:`write_solution` and an output dtype (cached: every patch asks).

    Integer dtypes are clipped to their range and rounded (or truncated, as
    OpenCV does); floats are clipped to [0, 1] only when ``clip``.
    """
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), TRUNCATE if truncate else ROUND_HALF_UP
    if clip:
        return 0.0, 1.0, NO_ROUNDING
    return -np.inf, np.inf, NO_ROUNDING


@nb.njit(cache=True, nogil=True)
def write_solution(out, solution, inside, y0, x0, lo, hi, rounding):
    """Write the box solution into ``out`` (H, W, C) where ``inside`` is set.

    Values are clipped to ``[lo, hi]``; ``rounding`` is :data:`ROUND_HALF_UP`
    (integer outputs: ``floor(v + 0.5)``), :data:`TRUNCATE` (towards zero, as
    ``cv2.seamlessClone``) or :data:`NO_ROUNDING` (float outputs).
    """
    C, bh, bw = solution.shape
    for i in range(bh):
        for j in range(bw):
            if not inside[i, j]:
                continue
            for c in range(C):
                v = solution[c, i, j]
                if rounding == 1:
                    v = np.floor(v + 0.5)
                v = min(max(v, lo), hi)
                if rounding == 2:
                    v = np.trunc(v)
                out[y0 + i, x0 + j, c] = v
    return out


@nb.njit(cache=True, nogil=True)
def assemble_rhs_opencv(dst, src, weights, oy, ox, y0, y1, x0, x1, mixed):
    """Right-hand side of ``cv2.seamlessClone``'s system on the rectangle ``[y0, y1) x [x0, x1)``.

    The rectangle's outer ring keeps the destination's values (Dirichlet); the
    unknowns are its interior.  Every pixel ``q`` of the rectangle carries one
    guidance vector ``(vx, vy)`` for its forward edges ``q -> q + x`` and
    ``q -> q + y``: with ``m = weights`` at ``q`` (0 outside the source array),
    ``v = m * grad(src) + (1 - m) * grad(dst)``; with ``mixed``, per channel the
    source's pair is used only where ``|gx - gy|`` of the source exceeds the
    destination's, else ``v = grad(dst)`` (OpenCV's MIXED_CLONE rule).  Then for
    an interior pixel ``p``::

        rhs[p] = -(vx[p] - vx[p - x]) - (vy[p] - vy[p - y]) + sum of ring neighbours of p

    Returns float32 (C, y1 - y0 - 2, x1 - x0 - 2), each value summed in float64 and rounded
    once (the sine transforms that take it run in float32).  ``weights`` is positive only
    where ``src`` has the forward neighbours (OpenCV erodes the mask first); ``dst`` and ``src``
    are C-contiguous.
    """
    H, W, C = dst.shape
    h, w = weights.shape
    bh, bw = y1 - y0, x1 - x0
    # Each row is walked as one run of values, pixel by pixel and channel by channel (index
    # t = j C + c), with views that start at index 0 and unsigned indices (no negative-index
    # wraparound test), so that every loop reads and writes with unit stride and vectorises.
    # The guidance of two rows at a time (this one and the one above) stays in cache.
    n, Cu = np.uint64(bw * C), np.uint64(C)
    vx = np.zeros((2, bw * C))
    vy = np.zeros((2, bw * C))
    weight = np.zeros(bw * C)  # each value's weight in this row
    total = np.zeros(bw * C)
    rhs = np.empty((C, bh - 2, bw - 2), np.float32)
    dflat = dst.reshape(H, W * C)
    sflat = src.reshape(h, w * C)
    start = x0 * C  # the rectangle's first value in a flat destination row
    for i in range(bh - 1):
        now, above = i & 1, 1 - (i & 1)
        y = y0 + i
        sy = y - oy
        vxr, vyr, vya = vx[now], vy[now], vy[above]
        drow, dbelow = dflat[y, start:], dflat[y + 1, start:]
        for t in range(n - Cu):
            d = np.float64(drow[t])
            vxr[t] = np.float64(drow[t + Cu]) - d
            vyr[t] = np.float64(dbelow[t]) - d
        # The rectangle's columns j whose weight may be positive: 0 <= x0 + j - ox < w - 1 on a
        # source row with a row below (the last row and column of the source weigh 0).
        ja, jb = 0, 0
        if 0 <= sy < h - 1:
            ja = min(max(0, ox - x0), bw - 1)
            jb = max(ja, min(bw - 1, ox - x0 + w - 1))
        if ja < jb:
            wrow = weights[sy]
            for j in range(ja, jb):
                m = wrow[x0 + j - ox]
                for c in range(C):
                    weight[j * C + c] = m
            first = (x0 + ja - ox) * C  # the source's flat index of the value j = ja, c = 0
            srow, sbelow = sflat[sy, first:], sflat[sy + 1, first:]
            mv, vxv, vyv = weight[ja * C:], vxr[ja * C:], vyr[ja * C:]
            for k in range(np.uint64((jb - ja) * C)):
                m = mv[k]
                dx, dy = vxv[k], vyv[k]
                sp = np.float64(srow[k])
                gx = np.float64(srow[k + Cu]) - sp
                gy = np.float64(sbelow[k]) - sp
                take = m > 0.0
                if mixed:
                    take = take and abs(gx - gy) > abs(dx - dy)
                vxv[k] = m * gx + (1.0 - m) * dx if take else dx
                vyv[k] = m * gy + (1.0 - m) * dy if take else dy
        if i == 0:
            continue
        for t in range(Cu, n - Cu):
            total[t] = vxr[t - Cu] - vxr[t] + vya[t] - vyr[t]
        if i == 1:  # next to the top side: add its fixed values
            top = dflat[y0, start:]
            for t in range(Cu, n - Cu):
                total[t] += top[t]
        if i == bh - 2:  # next to the bottom side
            bottom = dflat[y1 - 1, start:]
            for t in range(Cu, n - Cu):
                total[t] += bottom[t]
        for c in range(C):
            total[C + c] += drow[c]  # the left side's value
            total[(bw - 2) * C + c] += drow[(bw - 1) * C + c]  # the right side's
            out = rhs[c, i - 1]
            for j in range(1, bw - 1):
                out[j - 1] = total[j * C + c]
    return rhs


# --- volumes: the 7-point Laplacian ---------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def assemble_rhs_3d(dst, src, mask, oz, oy, ox, z0, z1, y0, y1, x0, x1, mode, factor):
    """:func:`assemble_rhs` for volumes: ``dst`` (D, H, W, C), ``src`` (d, h, w, C) at ``(oz, oy, ox)``, ``mask`` (d, h, w).

    For every masked voxel ``p`` and in-volume neighbour ``q`` (6-neighbourhood):
    ``rhs[p] += v_pq``, plus ``dst[q]`` when ``q`` is not masked.  Returns the
    float64 rhs (C, z1-z0, y1-y0, x1-x0) and the mask on the box.
    """
    D, H, W, C = dst.shape
    d, h, w = mask.shape
    bd, bh, bw = z1 - z0, y1 - y0, x1 - x0
    rhs = np.zeros((C, bd, bh, bw))
    inside = np.zeros((bd, bh, bw), dtype=np.bool_)
    for k in range(bd):
        z = z0 + k
        sz = z - oz
        for i in range(bh):
            y = y0 + i
            sy = y - oy
            for j in range(bw):
                x = x0 + j
                sx = x - ox
                if not (0 <= sz < d and 0 <= sy < h and 0 <= sx < w) or not mask[sz, sy, sx]:
                    continue
                inside[k, i, j] = True
                for n in range(6):
                    qz, qy, qx = z, y, x
                    if n == 0:
                        qz -= 1
                    elif n == 1:
                        qz += 1
                    elif n == 2:
                        qy -= 1
                    elif n == 3:
                        qy += 1
                    elif n == 4:
                        qx -= 1
                    else:
                        qx += 1
                    if not (0 <= qz < D and 0 <= qy < H and 0 <= qx < W):
                        continue  # the volume's border: no edge (Neumann)
                    tz, ty, tx = qz - oz, qy - oy, qx - ox
                    has = 0 <= tz < d and 0 <= ty < h and 0 <= tx < w
                    q_masked = has and mask[tz, ty, tx]
                    for c in range(C):
                        dp = np.float64(dst[z, y, x, c])
                        dq = np.float64(dst[qz, qy, qx, c])
                        sq = np.float64(src[tz, ty, tx, c]) if has else 0.0
                        acc = _guidance(dp, dq, np.float64(src[sz, sy, sx, c]), sq, has, mode, factor)
                        if not q_masked:
                            acc += dq
                        rhs[c, k, i, j] += acc
    return rhs, inside


@nb.njit(cache=True, nogil=True)
def apply_masked_laplacian_3d(x, inside, sides):
    """``A @ x`` for the masked 7-point Laplacian on a box; ``sides`` (6,) bool: low/high border per axis (z, y, x)."""
    C, bd, bh, bw = x.shape
    out = np.zeros_like(x)
    for k in range(bd):
        for i in range(bh):
            for j in range(bw):
                if not inside[k, i, j]:
                    continue
                deg = 6 - ((k == 0) & sides[0]) - ((k == bd - 1) & sides[1]) - ((i == 0) & sides[2]) \
                    - ((i == bh - 1) & sides[3]) - ((j == 0) & sides[4]) - ((j == bw - 1) & sides[5])
                for c in range(C):
                    acc = deg * x[c, k, i, j]
                    if k > 0 and inside[k - 1, i, j]:
                        acc -= x[c, k - 1, i, j]
                    if k < bd - 1 and inside[k + 1, i, j]:
                        acc -= x[c, k + 1, i, j]
                    if i > 0 and inside[k, i - 1, j]:
                        acc -= x[c, k, i - 1, j]
                    if i < bh - 1 and inside[k, i + 1, j]:
                        acc -= x[c, k, i + 1, j]
                    if j > 0 and inside[k, i, j - 1]:
                        acc -= x[c, k, i, j - 1]
                    if j < bw - 1 and inside[k, i, j + 1]:
                        acc -= x[c, k, i, j + 1]
                    out[c, k, i, j] = acc
    return out


@nb.njit(cache=True, nogil=True)
def write_box(out, solution, y0, x0, lo, hi, rounding):
    """:func:`write_solution` for a whole rectangle: no mask, and loops LLVM can vectorise.

    Row by row and channel by channel, one loop per rounding mode; each value is computed as in
    :func:`write_solution` (float64 ``floor(v + 0.5)``, clip), so the output is identical.
    ``rounding`` is :data:`ROUND_HALF_UP` or :data:`NO_ROUNDING`: the rectangle blends never
    truncate (OpenCV's formulation writes with :func:`write_solution`), and each vectorised loop
    adds compile time to the first call.
    """
    C, bh, bw = solution.shape
    for i in range(bh):
        row = out[y0 + i]
        for c in range(C):
            sol = solution[c, i]
            if rounding == 1:
                for j in range(bw):
                    row[x0 + j, c] = min(max(np.floor(np.float64(sol[j]) + 0.5), lo), hi)
            else:
                for j in range(bw):
                    row[x0 + j, c] = min(max(np.float64(sol[j]), lo), hi)
    return out


@nb.njit(cache=True, nogil=True)
def write_solution_3d(out, solution, inside, z0, y0, x0, lo, hi, rounding):
    """:func:`write_solution` for volumes: ``out`` (D, H, W, C), ``solution`` (C, d, h, w)."""
    C, bd, bh, bw = solution.shape
    for k in range(bd):
        for i in range(bh):
            for j in range(bw):
                if not inside[k, i, j]:
                    continue
                for c in range(C):
                    v = solution[c, k, i, j]
                    if rounding == 1:
                        v = np.floor(v + 0.5)
                    v = min(max(v, lo), hi)
                    if rounding == 2:
                        v = np.trunc(v)
                    out[z0 + k, y0 + i, x0 + j, c] = v
    return out
