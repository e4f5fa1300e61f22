"""Geometric multigrid for the masked 5-point Laplacian: the preconditioner of the exact masked solve.

A mask that is not a rectangle leaves no fast transform for the exact system, and the earlier
preconditioner (the box solver on the mask's bounding box, a fictitious domain) needed 14-50
conjugate-gradient iterations, each a full transform of the box.  Multigrid removes the error at
every scale instead, at a few sweeps over the pixels per iteration:

* **Coarse levels by bilinear interpolation**: every second cell of every second row is a coarse
  cell; prolongation ``P`` interpolates the coarse values bilinearly onto the masked cells, and
  restriction is its transpose (full weighting, ``R = P^T``).  The coarse operators are the exact
  Galerkin products ``P^T A P``, 9-point stencils on any mask — holes, thin bridges, disconnected
  parts — so nothing about the mask's geometry is approximated.  A coarse cell exists where a
  masked cell lies in its 3x3 support; away from the mask's edge and the image border its stencil
  is a constant, so the products are computed only along the edges.
* **The cycle**: a V-cycle, one Gauss-Seidel sweep before and one after each coarse correction
  (red-black on the finest level's 5-point stencil, four colours on the coarse levels' 9-point
  ones, reversed after the correction); the coarsest level (at most a hundred unknowns) is solved
  directly.  Interpolation carries smooth errors to the coarse grid far better than piecewise
  constants: 5-8 CG iterations for a uint8 blend from 64 to 2048 px where 2x2 aggregation (this
  module before the 21st session) needed 8-13 with W-cycles and an over-corrected coarse
  correction (``benchmarks/multigrid_study.py``, docs/performance.md).
* **As a CG preconditioner** the cycle is symmetric positive definite by construction (Galerkin
  coarse operators, ``R = P^T``, each sweep after the correction the reverse of the one before):
  the iteration count does not grow with the mask's size (mesh-independent).
* **Stopping on the error, not the residual**: image blends ask for an error of a fraction of a
  grey level, which the preconditioned residual ``B r`` (computed every iteration anyway)
  estimates directly, and which stops earlier than a residual criterion with a float64
  refinement pass (:meth:`Hierarchy.solve`).

The finest level is matrix-free (its stencil follows from the mask: 4 on the diagonal, less at the
image border, -1 to each masked neighbour); kernels work on all channels at once, in float32, and
only over each row's span of masked pixels.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.linalg
from numba.typed import List

from .blas import single_threaded_blas

#: Below this many unknowns the coarsest level is solved with a dense inverse.
COARSEST = 100
#: Masked runs of a row closer than this many columns are swept as one range (the gap's zeros
#: included): a shorter gap costs less than another loop.
SPAN_GAP = 8
#: The relative residual one float32 CG pass aims at before the float64 refinement takes over.
#: float32 rounding stalls the true residual near 1e-6; 1e-5 stopped 512 px uint8 blends one
#: iteration short of the error goal, which then cost a second pass (a restart cycle, a float64
#: residual) and a confirming one: 14 cycles where 3e-6 needs 12 (benchmarks' masks, 64-2048 px).
FLOAT32_RTOL = 3e-6

# Layout shared by the kernels.  Every level's arrays are padded: one ring of zeros around the box
# (two after an even size), so the kernels need no bounds checks: coarse cell ``P`` sits on fine
# cell ``2P - 1`` and interpolates to ``2P - 2 .. 2P``, all inside the array.  All vectors are zero
# off the mask, and the stencils are zero there too, which keeps them zero without branches.
# ``spans[i] = (first_0, last_0 + 1, first_1, last_1 + 1, ...)`` are the padded column ranges a row
# touches, zero-filled: a row's masked runs, runs less than :data:`SPAN_GAP` apart merged (a ring's
# hole, the gaps between an object's parts are skipped; short gaps cost less than another loop).
# Indices are unsigned and rows are taken as 1-D views: that is what lets LLVM vectorise the loops
# (signed indices make Numba check for negative wrap-around on every access).
# _INHERITED: a kernel that does not set ``fastmath`` itself inherits it from the caller it is first
# compiled for, and that compiled version then serves every caller: ``p = z + beta p`` run as a row of
# the fast-math ``direction_apply_dot`` was contracted to a fused multiply-add, in that kernel and in
# every other caller of the row.  Row kernels called from a fast-math kernel therefore say
# ``fastmath=False`` (or ``True``) themselves.
# ``fastmath`` only on the reductions (dot products, norms, the coarsest solve), which cannot vectorise
# without reordering their sums.  On the element-wise kernels it let LLVM reorder a pixel's five-term
# sum differently in a process that compiled the kernels than in one that loaded them from the cache
# (1 ulp on 6% of the pixels after the first sweep, most after a cycle): a masked blend's output then
# depended on which process ran it (uint8 results 1 level apart in up to 49 pixels at 512 px).
# Without it they run as fast (the cycle within 2% at 512 px) and give the same bits in every
# process (tests/test_numba_cache.py).


@nb.njit(cache=True, nogil=True)
def _padded(n):
    """Padded length of ``n`` cells: a ring of zeros on both sides, rounded up to odd.

    The next level's ``n // 2 + 1`` cells then reach fine cells up to ``2 (n // 2 + 1)``, the last
    index of the padded array.
    """
    return 2 * (n // 2) + 3


def _pad(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(a.shape[:-2] + shape, np.float32)
    out[..., 1 : a.shape[-2] + 1, 1 : a.shape[-1] + 1] = a
    return out


@nb.njit(cache=True, nogil=True)
def _row_spans(inside, padded_rows):
    """Padded ``(first, last + 1)`` column ranges of every padded row's masked runs, zero-filled.

    Runs less than :data:`SPAN_GAP` columns apart are merged.  Returns uint64 ``(padded_rows, 2 K)``,
    ``K`` the most ranges a row has (at least 1); an empty row is all zeros.
    """
    h, w = inside.shape
    most = 1
    for i in range(h):
        count, last = 0, -SPAN_GAP - 1
        for j in range(w):
            if inside[i, j]:
                if j - last > SPAN_GAP:
                    count += 1
                last = j
        most = max(most, count)
    spans = np.zeros((padded_rows, 2 * most), np.uint64)
    for i in range(h):
        k, last = -1, -SPAN_GAP - 1
        for j in range(w):
            if inside[i, j]:
                if j - last > SPAN_GAP:
                    k += 1
                    spans[i + 1, 2 * k] = j + 1
                spans[i + 1, 2 * k + 1] = j + 2
                last = j
    return spans


@nb.njit(cache=True, nogil=True)
def _degree(i, j, h, w, sides):
    """The fine Laplacian's diagonal at box pixel ``(i, j)``: 4, less one per side on the image border."""
    return 4.0 - ((i == 0) & sides[0]) - ((i == h - 1) & sides[1]) - ((j == 0) & sides[2]) - ((j == w - 1) & sides[3])


#: Plane of a coarse level's stencil for each offset ``(di + 1, dj + 1)``: centre, north, south, west,
#: east, north-west, north-east, south-west, south-east; plane 9 holds ``1 / centre``.
PLANE = np.array([[5, 1, 6], [3, 0, 4], [7, 2, 8]], np.int64)
#: The fine level's stencil away from the mask's edge and the image border.
FIVE_POINT = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


@nb.njit(cache=True, nogil=True)
def _spread(out, weight, r, c):
    """Add ``weight`` to ``out``'s entries (3 x 3 offsets) for the coarse cells a cell interpolates from.

    The cell lies ``(r, c)`` cells from a coarse cell's centre; a coarse cell ``P`` sits on fine cell
    ``2P - 1`` (padded indices), and a fine cell between two coarse ones takes half of each
    (bilinear interpolation).
    """
    r0, rn, rw = (r // 2, 1, 1.0) if r % 2 == 0 else ((r - 1) // 2, 2, 0.5)
    c0, cn, cw = (c // 2, 1, 1.0) if c % 2 == 0 else ((c - 1) // 2, 2, 0.5)
    for x in range(rn):
        for y in range(cn):
            out[r0 + x + 1, c0 + y + 1] += weight * rw * cw


@nb.njit(cache=True, nogil=True)
def _entry(st, p, q, dp, dq):
    """Level stencil ``A[(p, q), (p + dp, q + dq)]``: the fine level's from its mask, a coarse level's stored."""
    if st.shape[0] == 3:  # fine: degree on the diagonal, -1 to a masked 4-neighbour
        if dp == 0 and dq == 0:
            return np.float64(st[0, p, q])
        if dp != 0 and dq != 0:
            return 0.0
        return -np.float64(st[1, p, q] * st[1, p + dp, q + dq])
    return np.float64(st[PLANE[dp + 1, dq + 1], p, q])


@nb.njit(cache=True, nogil=True)
def _galerkin_row(st, wt, P, Q, out):
    """Row ``(P, Q)`` of ``P^T A P`` (3 x 3 offsets into ``out``) from level stencil ``st`` and its mask ``wt``.

    Coarse cell ``(P, Q)`` interpolates to the fine cells ``2P - 2 .. 2P`` x ``2Q - 2 .. 2Q`` with
    weights 1/2, 1, 1/2 per axis (:func:`_spread`); a fine cell ``f`` and its stencil neighbour
    ``g`` add ``w_f A[f, g] w_g`` to the entry of each coarse cell ``g`` interpolates from.
    """
    out[:] = 0.0
    for a in range(-1, 2):
        for b in range(-1, 2):
            p, q = 2 * P - 1 + a, 2 * Q - 1 + b
            if wt[p, q] == 0.0:
                continue
            wf = (1.0 if a == 0 else 0.5) * (1.0 if b == 0 else 0.5)
            for dp in range(-1, 2):
                for dq in range(-1, 2):
                    v = _entry(st, p, q, dp, dq)
                    if v != 0.0:
                        _spread(out, wf * v, a + dp, b + dq)
    return out


@nb.njit(cache=True, nogil=True)
def coarsen_constant(s):
    """``P^T A P``'s stencil far from any edge, for a constant 3 x 3 stencil ``s`` (float64, a new array)."""
    out = np.zeros((3, 3))
    for a in range(-1, 2):
        for b in range(-1, 2):
            wf = (1.0 if a == 0 else 0.5) * (1.0 if b == 0 else 0.5)
            for dp in range(-1, 2):
                for dq in range(-1, 2):
                    _spread(out, wf * s[dp + 1, dq + 1], a + dp, b + dq)
    return out


@nb.njit(cache=True, nogil=True)
def coarsen(st, wt, standard, rows, cols, constant):
    """The next level: its stencil planes ``P^T A P`` (10, Hc, Wc), mask, interior flags and masked count.

    ``rows, cols``: the level's unpadded size; the coarse level has ``rows // 2 + 1`` x
    ``cols // 2 + 1`` cells, a coarse cell masked when a masked cell lies in its 3 x 3 support.
    ``standard`` marks the cells whose whole stencil is the constant one (away from the mask's
    edge and the image border); a coarse cell whose support is all standard gets ``constant``
    (:func:`coarsen_constant` of it) instead of the product, which is computed only near edges.
    """
    hc, wc = rows // 2 + 1, cols // 2 + 1
    Hc, Wc = _padded(hc), _padded(wc)
    planes = np.zeros((10, Hc, Wc), np.float32)
    wt_c = np.zeros((Hc, Wc), np.float32)
    standard_c = np.zeros((Hc, Wc), np.bool_)
    row = np.zeros((3, 3))
    count = 0
    for P in range(1, hc + 1):
        for Q in range(1, wc + 1):
            masked, interior = False, True
            for p in range(2 * P - 2, 2 * P + 1):
                for q in range(2 * Q - 2, 2 * Q + 1):
                    masked |= wt[p, q] != 0.0
                    interior &= standard[p, q]
            if not masked:
                continue
            count += 1
            wt_c[P, Q] = 1.0
            standard_c[P, Q] = interior
            values = constant if interior else _galerkin_row(st, wt, P, Q, row)
            for di in range(3):
                for dj in range(3):
                    planes[PLANE[di, dj], P, Q] = values[di, dj]
            planes[9, P, Q] = np.float32(1.0) / planes[0, P, Q]
    return planes, wt_c, standard_c, count


# --- Row operations.  A level is described by its stencil planes ``st``: the fine level is
# matrix-free, (degree, mask, 1/degree) — the degree is 4, less on the image border, and every
# masked neighbour is -1; a coarse level stores its Galerkin stencil, 9 planes (see PLANE) and
# 1/centre.  All planes are zero off the mask. -----------------------------------------------------


@nb.njit(cache=True, nogil=True)
def smooth_row(u, f, st, spans, i, color, from_zero, scratch):
    """Finest level: Gauss-Seidel update of row ``i``'s pixels of one colour (``(i + j) % 2 == color``).

    With ``from_zero`` ``u`` is taken as zero: those pixels get ``f / degree``, the other colour's 0
    (the sweep's second half sets them).  ``scratch`` is a float32 row of at least the padded width.

    Every column of a span is computed and the other colour's keep their value (a select) instead
    of a loop over every second column: unit-stride loops vectorise, strided ones do not (1.3-1.5x
    on that level's sweeps at 512 px, the same values).  The new row goes to ``scratch`` and is
    copied back: written in place, each column would read its west neighbour's store, a dependence
    that keeps LLVM from vectorising (no value changes: a pixel reads only the other colour, which
    the select leaves as it was).
    """
    one = np.uint64(1)
    parity = (np.uint64(i) + np.uint64(color)) & one
    rc = st[2, i]
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        for c in range(u.shape[0]):
            un, uu, us, fr = u[c, i - 1], u[c, i], u[c, i + 1], f[c, i]
            if from_zero:
                # The other colour's pixels get 0, not their stale values: the sweep's second half
                # overwrites them before anything reads them, so the values are the same as a loop over
                # every second column's, in one unit-stride (vectorised) loop: 1.3-1.8x per level at 2048 px.
                for j in range(j0, j1):
                    uu[j] = rc[j] * fr[j] if ((j + parity) & one) == 0 else np.float32(0.0)
            else:
                for j in range(j0, j1):
                    v = rc[j] * (fr[j] + un[j] + us[j] + uu[j - one] + uu[j + one])
                    scratch[j] = v if ((j + parity) & one) == 0 else uu[j]
                for j in range(j0, j1):
                    uu[j] = scratch[j]


@nb.njit(cache=True, nogil=True)
def coarse_smooth_row(u, f, st, spans, i, color, scratch):
    """Coarse level: Gauss-Seidel update of row ``i``'s cells of one colour (``(i + j) % 2 == color``).

    A 9-point stencil couples a cell to its diagonal neighbours, of its own colour, but only in the
    rows above and below: a row's cells of one colour are updated at once, as on the finest level
    (:func:`smooth_row`: every column computed, the other colour's kept by a select, unit stride),
    and the order of the rows matters (:func:`coarse_smooth_restrict`, :func:`coarse_prolong_smooth`).
    """
    one = np.uint64(1)
    parity = (np.uint64(i) + np.uint64(color)) & one
    sn, ss, sw, se = st[1, i], st[2, i], st[3, i], st[4, i]
    snw, sne, ssw, sse, rc = st[5, i], st[6, i], st[7, i], st[8, i], st[9, i]
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        for c in range(u.shape[0]):
            un, uu, us, fr = u[c, i - 1], u[c, i], u[c, i + 1], f[c, i]
            for j in range(j0, j1):
                v = rc[j] * (fr[j] - sn[j] * un[j] - ss[j] * us[j] - sw[j] * uu[j - one] - se[j] * uu[j + one]
                             - snw[j] * un[j - one] - sne[j] * un[j + one] - ssw[j] * us[j - one]
                             - sse[j] * us[j + one])
                scratch[j] = v if ((j + parity) & one) == 0 else uu[j]
            for j in range(j0, j1):
                uu[j] = scratch[j]


@nb.njit(cache=True, nogil=True)
def _residual_row(u, f, st, i, lo, hi, rr):
    """``rr[lo:hi] = (f - A u)[i, lo:hi]`` for one channel's arrays (rows ``i - 1 .. i + 1`` of ``u``)."""
    one = np.uint64(1)
    un, uu, us, fr = u[i - 1], u[i], u[i + 1], f[i]
    if st.shape[0] == 3:
        dr, wr = st[0, i], st[1, i]
        for j in range(lo, hi):
            rr[j] = wr[j] * (fr[j] + un[j] + us[j] + uu[j - one] + uu[j + one]) - dr[j] * uu[j]
    else:
        sc, sn, ss, sw, se = st[0, i], st[1, i], st[2, i], st[3, i], st[4, i]
        snw, sne, ssw, sse = st[5, i], st[6, i], st[7, i], st[8, i]
        for j in range(lo, hi):
            rr[j] = fr[j] - sc[j] * uu[j] - sn[j] * un[j] - ss[j] * us[j] - sw[j] * uu[j - one] - se[j] * uu[j + one] \
                - snw[j] * un[j - one] - sne[j] * un[j + one] - ssw[j] * us[j - one] - sse[j] * us[j + one]


@nb.njit(cache=True, nogil=True)
def _zero_row(out, spans, I):
    """``out[:, I] = 0`` over row ``I``'s ranges."""
    for s in range(0, spans.shape[1], 2):
        if spans[I, s + 1] == 0:
            return
        for c in range(out.shape[0]):
            oc = out[c, I]
            for J in range(spans[I, s], spans[I, s + 1]):
                oc[J] = 0.0


@nb.njit(cache=True, nogil=True)
def restrict_row(u, f, st, spans, i, coarse_spans, row, out):
    """Add row ``i``'s share of ``P^T (f - A u)`` to ``out``: its residual, weighted 1/2, 1, 1/2 per axis.

    An odd row lies on coarse row ``(i + 1) / 2`` (weight 1), an even row between coarse rows
    ``i / 2`` and ``i / 2 + 1`` (1/2 each), the second of which it is the first to reach: that row
    is zeroed first (the caller zeroes coarse row 1).  The residual is computed into ``row``
    (float32 (C, W + 2)) over the row's ranges, zeros beside each as far as its coarse cells read.
    """
    one, two = np.uint64(1), np.uint64(2)
    half = np.float32(0.5)
    I = (i + 1) >> 1
    between = (i & 1) == 0
    if between:
        _zero_row(out, coarse_spans, I + 1)
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        # Coarse columns J0 .. J1 reach this range: they read fine columns 2 J0 - 2 .. 2 J1.
        J0, J1 = (j0 + one) >> one, (j1 + one) >> one
        for c in range(u.shape[0]):
            rr = row[c]
            for j in range(two * J0 - two, j0):  # the range's residual, zeros beside it
                rr[j] = 0.0
            for j in range(j1, two * J1 + one):
                rr[j] = 0.0
            _residual_row(u[c], f[c], st, i, j0, j1, rr)
            o0, o1 = out[c, I], out[c, I + 1]
            if between:
                for J in range(J0, J1 + one):
                    v = half * (half * rr[two * J - two] + rr[two * J - one] + half * rr[two * J])
                    o0[J] += v
                    o1[J] += v
            else:
                for J in range(J0, J1 + one):
                    o0[J] += half * rr[two * J - two] + rr[two * J - one] + half * rr[two * J]


@nb.njit(cache=True, nogil=True)
def prolong_row(u, e, wt, spans, i):
    """``u += P e`` on row ``i``: each masked cell interpolates its coarse neighbours (bilinear)."""
    one, two = np.uint64(1), np.uint64(2)
    half = np.float32(0.5)
    I = (i + 1) >> 1  # coarse row above (or at) fine row i; an even fine row also takes row I + 1
    between = (i & 1) == 0
    wr = wt[i]
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        # Fine columns 2J - 1 (on coarse column J) and 2J (between J and J + 1), looped by coarse
        # column so that LLVM vectorises; a range's cells may reach one column past it on each side,
        # where the mask weight is 0 (ranges are SPAN_GAP apart, so no column is reached twice).
        J0, J1 = (j0 + one) >> one, j1 >> one
        for c in range(u.shape[0]):
            uu, e0, e1 = u[c, i], e[c, I], e[c, I + 1]
            if between:
                for J in range(J0, J1 + one):
                    v, v1 = half * (e0[J] + e1[J]), half * (e0[J + one] + e1[J + one])
                    uu[two * J - one] += wr[two * J - one] * v
                    uu[two * J] += wr[two * J] * (half * (v + v1))
            else:
                for J in range(J0, J1 + one):
                    v, v1 = e0[J], e0[J + one]
                    uu[two * J - one] += wr[two * J - one] * v
                    uu[two * J] += wr[two * J] * (half * (v + v1))


# _LITERALS: a constant argument (``0``, ``False``) reaches a jitted callee as a literal type, and
# each literal value compiles the callee once more: smooth_row compiled three times and prolong_row
# twice, about 1.3 s of a cold first masked blend.  The sweeps below pass np.int64 / np.bool_ values.

# --- Sweeps.  Each walks the rows once, doing in one pass what would otherwise take two or three:
# a Gauss-Seidel sweep updates one colour on row i and the other on row i - 1 (the same arithmetic
# as two half-sweeps: on the finest level neither colour reads its own, on the coarse ones see
# coarse_smooth_restrict), the residual of rows already final is restricted behind the sweep, and a
# coarse correction is added to a row just before the sweep reads it. --------------------------


@nb.njit(cache=True, nogil=True)
def smooth_restrict(u, f, st, spans, coarse_spans, row, out, scratch):
    """Finest level: a red-black Gauss-Seidel sweep from zero (red first), then ``out = P^T (f - A u)``, in one pass.

    Row ``i``'s residual reads rows ``i - 1 .. i + 1`` of ``u``, final once the sweep's second half
    has passed them: it is restricted right behind the sweep, while those rows are in cache (the
    same values as the whole sweep first, then the restriction: tests/test_multigrid.py).
    """
    H = st.shape[1]
    first, yes, no = np.int64(0), np.bool_(True), np.bool_(False)  # not literals: see _LITERALS
    _zero_row(out, coarse_spans, np.int64(1))  # not a literal: see _LITERALS
    for i in range(1, H):
        if i < H - 1:
            smooth_row(u, f, st, spans, i, first, yes, scratch)
        if i > 1:
            smooth_row(u, f, st, spans, i - 1, 1 - first, no, scratch)
        if i > 2:  # rows up to i - 1 are final: row i - 2's residual reads them
            restrict_row(u, f, st, spans, i - 2, coarse_spans, row, out)
    restrict_row(u, f, st, spans, H - 2, coarse_spans, row, out)


@nb.njit(cache=True, nogil=True)
def coarse_smooth_restrict(u, f, st, spans, coarse_spans, row, out, scratch):
    """Coarse level: a red-black Gauss-Seidel sweep from zero, then ``out = P^T (f - A u)``, in one pass.

    Red on every row top to bottom, then black top to bottom.  Red on row ``i`` and black on row
    ``i - 1`` in one step is the same sweep: red reads the red row above (updated) and below (not
    yet) and black rows not yet updated; black reads the three red rows, all updated, the black row
    above (updated) and below (not yet).  The sweep starts from zero and ``u`` holds the last
    cycle's values, so each row is zeroed just before red reaches the row above it.
    """
    H = st.shape[1]
    red, black = np.int64(0), np.int64(1)  # not literals: see _LITERALS
    _zero_row(out, coarse_spans, np.int64(1))  # not a literal: see _LITERALS
    u[:, 1] = 0.0
    for i in range(1, H):
        if i < H - 1:
            u[:, i + 1] = 0.0
            coarse_smooth_row(u, f, st, spans, i, red, scratch)
        if i > 1:
            coarse_smooth_row(u, f, st, spans, i - 1, black, scratch)
        if i > 2:  # rows up to i - 1 are final: row i - 2's residual reads them
            restrict_row(u, f, st, spans, i - 2, coarse_spans, row, out)
    restrict_row(u, f, st, spans, H - 2, coarse_spans, row, out)


@nb.njit(cache=True, nogil=True)
def prolong_smooth(u, e, wt, spans, f, st, scratch, bits, top_bits, fu):
    """Finest level: ``u += P e``, then a red-black Gauss-Seidel sweep, black first, in one pass.

    It also takes the two reductions conjugate gradients needs of the cycle's result, per channel,
    on each row as it becomes final (while it is in cache): ``max |u|`` into ``top_bits`` (its
    bits; ``bits`` is ``u``'s uint32 view, see :func:`_max_abs_row`) and ``<f, u>`` into ``fu``.
    The same values as :func:`_max_abs_row` and :func:`dot` over the whole result.
    """
    H = st.shape[1]
    first, no = np.int64(1), np.bool_(False)  # not literals: see _LITERALS
    for c in range(fu.shape[0]):
        top_bits[c] = 0
        fu[c] = 0.0
    prolong_row(u, e, wt, spans, np.int64(1))
    for i in range(1, H):
        if i + 1 < H - 1:
            prolong_row(u, e, wt, spans, i + 1)
        if i < H - 1:
            smooth_row(u, f, st, spans, i, first, no, scratch)
        if i > 1:
            smooth_row(u, f, st, spans, i - 1, 1 - first, no, scratch)
            _max_abs_row(bits, spans, i - 1, top_bits)  # row i - 1 is final
            _dot_row(f, u, spans, i - 1, fu)


@nb.njit(cache=True, nogil=True)
def coarse_prolong_smooth(u, e, wt, spans, f, st, scratch):
    """Coarse level: ``u += P e``, then :func:`coarse_smooth_restrict`'s sweep reversed, in one pass.

    Black on every row bottom to top, then red bottom to top (black on row ``i`` and red on row
    ``i + 1`` in one step): the exact reverse of the sweep before the correction, which makes the
    cycle symmetric, as conjugate gradients needs.  Each row is corrected just before the sweep
    first reads it.
    """
    H = st.shape[1]
    red, black = np.int64(0), np.int64(1)  # not literals: see _LITERALS
    prolong_row(u, e, wt, spans, np.int64(H - 2))
    for i in range(H - 2, 0, -1):
        if i > 1:
            prolong_row(u, e, wt, spans, np.int64(i - 1))
        coarse_smooth_row(u, f, st, spans, i, black, scratch)
        if i + 1 < H - 1:
            coarse_smooth_row(u, f, st, spans, i + 1, red, scratch)
    coarse_smooth_row(u, f, st, spans, np.int64(1), red, scratch)


@nb.njit(cache=True, nogil=True, fastmath=True)
def coarsest_solve(f, u, inverse, rows, cols):
    """``u = A^+ f`` on the coarsest level's masked cells (a dense (pseudo-)inverse: at most :data:`COARSEST`)."""
    n = rows.size
    values = np.empty(n, np.float32)
    for c in range(f.shape[0]):
        for b in range(n):
            values[b] = f[c, rows[b], cols[b]]
        for a in range(n):
            total = np.float32(0.0)
            for b in range(n):
                total += inverse[a, b] * values[b]
            u[c, rows[a], cols[a]] = total


@nb.njit(cache=True, nogil=True)
def run_cycle(stencils, wts, spans, f, u, rows, scratch, inverse, cells_i, cells_j, bits, top_bits, fu):
    """``u[0] ≈ A^-1 f[0]`` by one V-cycle; level ``k``'s right-hand side and solution are ``f[k]``, ``u[k]``.

    ``bits``, ``top_bits``, ``fu``: ``u[0]``'s uint32 view and the reductions :func:`prolong_smooth`
    takes of the result.
    """
    levels = len(stencils)
    smooth_restrict(u[0], f[0], stencils[0], spans[0], spans[1], rows[0], f[1], scratch)
    for k in range(1, levels - 1):
        coarse_smooth_restrict(u[k], f[k], stencils[k], spans[k], spans[k + 1], rows[k], f[k + 1], scratch)
    coarsest_solve(f[levels - 1], u[levels - 1], inverse, cells_i, cells_j)
    for k in range(levels - 2, 0, -1):
        coarse_prolong_smooth(u[k], u[k + 1], wts[k], spans[k], f[k], stencils[k], scratch)
    prolong_smooth(u[0], u[1], wts[0], spans[0], f[0], stencils[0], scratch, bits, top_bits, fu)


@nb.njit(cache=True, nogil=True)
def build_levels(inside, sides, coarsest):
    """Every level's arrays in the padded layout, as typed lists, for :class:`Hierarchy`.

    Built here rather than in Python because a typed list's methods called from the interpreter
    (creating, appending, indexing, slicing) are compiled on first use in every process and not
    cached: about 2 s before the first masked blend of each process, DataLoader workers included.

    Returns
    -------
    stencils, wts, spans : typed lists, one entry per level
    fine_deg, fine_wt, fine_spans : the finest level's degree and mask planes and row spans
    levels : int
    st, wt : the coarsest level's stencil planes and mask, for its dense inverse
    """
    h, w = inside.shape
    H, W = _padded(h), _padded(w)
    # The finest level is matrix-free: (degree, mask, 1 / degree); the degree is 4, less on the image border.
    fine = np.zeros((3, H, W), np.float32)
    standard = np.zeros((H, W), np.bool_)
    for i in range(h):
        for j in range(w):
            if inside[i, j]:
                deg = _degree(i, j, h, w, sides)
                fine[0, i + 1, j + 1] = deg
                fine[1, i + 1, j + 1] = 1.0
                fine[2, i + 1, j + 1] = 1.0 / deg
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            standard[i + 1, j + 1] = (inside[i, j] and inside[i - 1, j] and inside[i + 1, j] and inside[i, j - 1]
                                      and inside[i, j + 1])
    stencils, wts, spans = List(), List(), List()
    stencils.append(fine)
    wts.append(fine[1])
    spans.append(_row_spans(inside, H))
    st, wt, rows, cols = fine, fine[1], h, w
    constant = FIVE_POINT.copy()  # the level's stencil away from every edge
    while True:
        constant = coarsen_constant(constant)
        st, wt, standard, count = coarsen(st, wt, standard, rows, cols, constant)
        rows, cols = rows // 2 + 1, cols // 2 + 1
        stencils.append(st)
        wts.append(wt)
        spans.append(_row_spans(wt[1 : rows + 1, 1 : cols + 1] != 0.0, st.shape[1]))
        if count <= coarsest or (rows <= 2 and cols <= 2):
            break
    return stencils, wts, spans, fine[0], fine[1], spans[0], len(stencils), st, wt


@nb.njit(cache=True, nogil=True)
def level_buffers(stencils, r, z):
    """Right-hand sides, solutions and residual rows of every level: ``f[0] = r``, ``u[0] = z``, zeros below."""
    C = r.shape[0]
    f, u, rows = List(), List(), List()
    f.append(r)
    u.append(z)
    for k in range(len(stencils)):
        shape = stencils[k].shape
        if k > 0:
            f.append(np.zeros((C, shape[1], shape[2]), np.float32))
            u.append(np.zeros((C, shape[1], shape[2]), np.float32))
        rows.append(np.zeros((C, shape[2] + 2), np.float32))
    return f, u, rows


class Hierarchy:
    """The levels of one mask's multigrid, built once per solve; :meth:`solve` runs the preconditioned CG.

    Parameters
    ----------
    inside : ndarray, bool (h, w)
        The masked pixels on their bounding box.
    sides : (top, bottom, left, right)
        Which sides of the box lie on the image border (no neighbour beyond: Neumann).
    """

    def __init__(self, inside: np.ndarray, sides):
        inside = np.ascontiguousarray(inside, dtype=np.bool_)
        sides = np.array(sides, dtype=np.bool_)
        h, w = inside.shape
        self.shape, self.sides = (h, w), tuple(bool(v) for v in sides)
        # Per level: stencil planes, mask weight and row spans (padded layout).  The finest level's
        # arrays also come on their own, so that nothing here indexes a typed list (see build_levels).
        (self.stencils, self.wts, self.spans, self.fine_deg, self.fine_wt, self.fine_spans,
         levels, last, last_wt) = build_levels(inside, sides, COARSEST)
        self.levels = int(levels)
        self.padded = self.fine_deg.shape
        self.scratch = np.zeros(self.padded[1], np.float32)
        self.cells_i, self.cells_j = np.nonzero(last_wt)
        with single_threaded_blas():
            self.inverse = _coarsest_inverse(_dense(last, self.cells_i, self.cells_j)).astype(np.float32)

    def solve(self, rhs: np.ndarray, rtol: float, max_iter: int, refinements: int,
              atol: np.ndarray | float | None = None) -> tuple[np.ndarray, int, bool]:
        """Solve ``A x = rhs`` to a float64 relative residual of ``rtol``, or to an estimated error of ``atol``.

        Conjugate gradients in float32 with one cycle per iteration as preconditioner, each
        channel with its own step sizes.  float32 rounding stalls CG near a relative residual of
        1e-6, so the residual is recomputed in float64 after each pass and, while above ``rtol``,
        solved for again (iterative refinement, the solution summed in float64).  Each pass aims
        at what is left, no further than :data:`FLOAT32_RTOL`.

        With ``atol`` the solve ends once every channel's *estimated error* is within ``atol``
        everywhere: the preconditioned residual ``B r`` is the cycle's approximation of the error
        ``A^-1 r``, and CG computes it every iteration anyway.  It falls short by about
        ``1 / (1 - rho)``, ``rho`` the cycle's contraction, so the bound is tightened by the rate at
        which the estimate falls (:func:`pcg`), and a pass that stops on it is confirmed by the
        next pass's first estimate, from the float64 residual — unless the pass computed a
        correction small enough for its float32 rounding not to matter (:data:`SMALL_PASS`).  A
        relative residual says nothing about the error in the solution's units — a smooth error
        hides behind a small residual — so this is the criterion for "exact to a fraction of a
        grey level" (tested against the exact error in tests/test_multigrid.py).

        Parameters
        ----------
        rhs : ndarray, float64 (C, h, w)
            Right-hand side on the mask's bounding box, zero off the mask.
        atol : float or ndarray (C,), optional
            Largest estimated error per channel, in the solution's units; ``rtol`` is then only
            the floor of each float32 pass.

        Returns
        -------
        x : ndarray, float32 or float64 (C, h, w), zero off the mask
            float32 while one pass did all the iterations, float64 (the passes summed) after more.
        iterations : int
            CG iterations, all passes together.
        converged : bool
        """
        C = rhs.shape[0]
        r = _pad(rhs, self.padded)
        # np.zeros, not zeros_like: calloc'd pages are zeroed by the kernel when first touched, and the
        # kernels touch only the rows' masked ranges (zeros_like writes every page: 1.4 ms per array at
        # 1024 px, five arrays per solve).
        p, ap, z = (np.zeros(r.shape, np.float32) for _ in range(3))
        # The solution: the first pass's own float32 array while it is the only pass that iterated (as a
        # rule), and the passes' sum in float64 after a second one (float32 would floor the residual).
        # Not allocating the float64 sum up front saves writing a fresh array of twice the box's bytes:
        # 5% of a 2048 px solve.
        x = None
        f, u, rows = level_buffers(self.stencils, r, z)
        # The cycle's reductions (prolong_smooth): the error estimate's maximum, taken on z's bits, and <r, z>
        z_bits, top_bits, rz = z.view(np.uint32), np.zeros(C, np.uint32), np.zeros(C)
        top = top_bits.view(np.float32)
        norm = np.sqrt(np.einsum("chw,chw->c", rhs, rhs))
        if atol is None:
            goal, error_goal = rtol * norm, np.zeros(C)
        else:  # the residual never decides then: only the error estimate ends the solve
            goal, error_goal = np.zeros(C), np.broadcast_to(np.asarray(atol, np.float64), (C,)).copy()
        left = norm
        rate = np.full(C, 0.5)
        total = 0
        for _ in range(refinements):
            needed = goal[left > 0] / left[left > 0]
            inner = max(FLOAT32_RTOL, 0.5 * float(needed.min())) if needed.size else 1.0
            d = np.zeros(r.shape, np.float32)  # no page of it is touched unless this pass iterates
            iterations, status = pcg(d, r, p, ap, z, self.stencils, self.wts, self.spans, f, u, rows, self.scratch,
                                     self.inverse, self.cells_i, self.cells_j, inner, error_goal, rate, max_iter,
                                     z_bits, top_bits, top, rz)
            total += iterations
            if status == NOT_CONVERGED:
                break
            if status == ERROR_ESTIMATE and iterations == 0:  # confirmed on a float64 residual
                return self._inner(x, r), total, True
            if x is None:
                x = d
            elif x.dtype != np.float64:
                x = np.add(x, d, dtype=np.float64)  # the float64 sum in one pass (not a copy, then a sum)
            else:
                x += d
            if status == SMALL_PASS_ESTIMATE:  # a small correction's own estimate (SMALL_PASS)
                return self._inner(x, r), total, True
            # The float64 residual, and for an estimate the next pass's first check: a float32 pass's
            # own residual drifts from the true one on badly conditioned masks.
            left = np.sqrt(residual64(x, rhs, self.fine_deg, self.fine_wt, self.fine_spans, r))
            if (left <= goal).all():
                return self._inner(x, r), total, True
        return self._inner(x, r), total, False

    def _inner(self, x, r):
        """The solution on the box (``x`` unpadded; zeros like ``r`` when no pass iterated)."""
        h, w = self.shape
        return (np.zeros(r.shape, np.float32) if x is None else x)[:, 1 : h + 1, 1 : w + 1]


#: A Cholesky pivot below this fraction of the largest (squared) marks the coarsest operator as singular.
SINGULAR = 1e-12


def _coarsest_inverse(A: np.ndarray) -> np.ndarray:
    """The coarsest operator's inverse from its Cholesky factor, or its pseudo-inverse where it is singular.

    It is singular where two coarse cells interpolate to the same few masked cells only (a mask of
    one or two pixels): their columns of ``P`` are equal.  An inverse computed there would be huge
    along that null direction, which prolongation cancels only up to rounding; the pseudo-inverse
    leaves it out.  The factor is the fast path (0.04 ms at 100 cells, the pseudo-inverse 0.8 ms: a
    large share of a 64 px blend).
    """
    try:
        L = np.linalg.cholesky(A)
        pivots = np.diag(L) ** 2
        if pivots.min() > SINGULAR * pivots.max():
            return scipy.linalg.cho_solve((L, True), np.eye(A.shape[0]))
    except np.linalg.LinAlgError:
        pass
    values, vectors = np.linalg.eigh(A)  # symmetric: half the pseudo-inverse's SVD
    kept = values > SINGULAR * values.max()
    return (vectors[:, kept] / values[kept]) @ vectors[:, kept].T


def _dense(st: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A coarse level's operator as a dense matrix over its masked cells ``(rows, cols)`` (padded coordinates)."""
    index = -np.ones(st.shape[1:], np.int64)
    index[rows, cols] = np.arange(rows.size)
    A = np.zeros((rows.size, rows.size))
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            other = index[rows + di, cols + dj]  # in the array: masked cells lie inside the padding ring
            there = other >= 0
            A[np.flatnonzero(there), other[there]] += st[PLANE[di + 1, dj + 1], rows[there], cols[there]]
    return A


# --- Conjugate gradients with the cycle as preconditioner ---------------------------------------
# Fused float32 kernels over the fine spans; sums per channel in float64.


@nb.njit(cache=True, nogil=True, fastmath=True)
def _apply_dot_row(p, deg, wt, spans, ap, i, out):
    """Row ``i`` of ``ap = A p``, its ``<p, ap>`` per channel added to ``out``."""
    one = np.uint64(1)
    dr, wr = deg[i], wt[i]
    for c in range(p.shape[0]):
        pn, pp, ps, qr = p[c, i - 1], p[c, i], p[c, i + 1], ap[c, i]
        total = np.float32(0.0)
        for s in range(0, spans.shape[1], 2):
            if spans[i, s + 1] == 0:
                break
            for j in range(spans[i, s], spans[i, s + 1]):
                q = dr[j] * pp[j] - wr[j] * (pn[j] + ps[j] + pp[j - one] + pp[j + one])
                qr[j] = q
                total += q * pp[j]
        out[c] += total


@nb.njit(cache=True, nogil=True, fastmath=True)
def direction_apply_dot(p, z, beta, deg, wt, spans, ap):
    """The new direction ``p = z + beta p`` (beta per channel), then ``ap = A p``; returns ``<p, ap>`` per channel.

    Row ``i`` of ``A p`` reads ``p``'s rows ``i - 1 .. i + 1``, so the direction is updated one row
    ahead, while those rows are still in cache (``p`` is read once, not twice): the same values as
    the whole direction first, then the whole product (tests/test_multigrid.py).
    """
    out = np.zeros(p.shape[0])
    H = deg.shape[0]
    for i in range(1, H):
        if i < H - 1:
            _direction_row(p, z, beta, spans, i)
        if i > 1:
            _apply_dot_row(p, deg, wt, spans, ap, i - 1, out)
    return out


@nb.njit(cache=True, nogil=True, fastmath=True)
def step(x, r, p, ap, alpha, spans):
    """``x += alpha p``, ``r -= alpha ap`` (alpha per channel); returns ``<r, r>`` per channel."""
    C = x.shape[0]
    out = np.zeros(C)
    for i in range(1, spans.shape[0] - 1):
        for c in range(C):
            a = np.float32(alpha[c])
            xr, rr, pr, qr = x[c, i], r[c, i], p[c, i], ap[c, i]
            total = np.float32(0.0)
            for s in range(0, spans.shape[1], 2):
                if spans[i, s + 1] == 0:
                    break
                for j in range(spans[i, s], spans[i, s + 1]):
                    xr[j] += a * pr[j]
                    rr[j] -= a * qr[j]
                    total += rr[j] * rr[j]
            out[c] += total
    return out


@nb.njit(cache=True, nogil=True, fastmath=True)
def dot(a, b, spans):
    """``<a, b>`` per channel."""
    out = np.zeros(a.shape[0])
    for i in range(1, spans.shape[0] - 1):
        _dot_row(a, b, spans, i, out)
    return out


@nb.njit(cache=True, nogil=True, fastmath=True)
def _dot_row(a, b, spans, i, out):
    """Row ``i`` of :func:`dot`, added to ``out``."""
    for c in range(a.shape[0]):
        ar, br = a[c, i], b[c, i]
        total = np.float32(0.0)
        for s in range(0, spans.shape[1], 2):
            if spans[i, s + 1] == 0:
                break
            for j in range(spans[i, s], spans[i, s + 1]):
                total += ar[j] * br[j]
        out[c] += total


@nb.njit(cache=True, nogil=True, fastmath=False)  # explicit: see _INHERITED
def _direction_row(p, z, beta, spans, i):
    """Row ``i`` of ``p = z + beta p``."""
    for c in range(p.shape[0]):
        b = np.float32(beta[c])
        pr, zr = p[c, i], z[c, i]
        for s in range(0, spans.shape[1], 2):
            if spans[i, s + 1] == 0:
                break
            for j in range(spans[i, s], spans[i, s + 1]):
                pr[j] = zr[j] + b * pr[j]


@nb.njit(cache=True, nogil=True, fastmath=True)
def residual64(x, rhs, deg, wt, spans, r):
    """``r = rhs - A x`` evaluated in float64 (``rhs`` unpadded float64), stored as float32; returns ``|r|^2`` per channel."""
    C = x.shape[0]
    one = np.uint64(1)
    out = np.zeros(C)
    for i in range(1, deg.shape[0] - 1):
        if spans[i, 1] == 0:
            continue
        dr, wr = deg[i], wt[i]
        for c in range(C):
            xn, xx, xs, br, rr = x[c, i - 1], x[c, i], x[c, i + 1], rhs[c, i - 1], r[c, i]
            total = 0.0
            for s in range(0, spans.shape[1], 2):
                if spans[i, s + 1] == 0:
                    break
                for j in range(spans[i, s], spans[i, s + 1]):
                    v = br[j - one] - np.float64(dr[j]) * xx[j] + np.float64(wr[j]) * (
                        np.float64(xn[j]) + np.float64(xs[j]) + np.float64(xx[j - one]) + np.float64(xx[j + one]))
                    rr[j] = v
                    total += v * v
            out[c] += total
    return out


#: The float32 sign bit's complement: ``bits & ABS_BITS`` is the bit pattern of ``|x|``.
ABS_BITS = np.uint32(0x7FFFFFFF)


@nb.njit(cache=True, nogil=True, fastmath=False)  # explicit: see _INHERITED
def _max_abs_row(bits, spans, i, top_bits):
    """Row ``i``: ``top_bits[c]`` raised to the row's largest ``|a|`` bits (``bits``: ``a``'s uint32 view).

    The bits of non-negative float32 values order as the values do, so the maximum is an integer
    maximum, which LLVM vectorises; its float32 maximum loop it does not (Numba's fast-math flags do
    not include the function attribute that reduction needs): 4.7x faster at 512 px (0.12 vs 0.57 ms
    per call, three channels; an ad hoc timing), the same value.
    """
    for c in range(bits.shape[0]):
        br = bits[c, i]
        row = np.uint32(0)
        for s in range(0, spans.shape[1], 2):
            if spans[i, s + 1] == 0:
                break
            for j in range(spans[i, s], spans[i, s + 1]):
                row = max(row, br[j] & ABS_BITS)
        top_bits[c] = max(top_bits[c], row)


NOT_CONVERGED, RESIDUAL, ERROR_ESTIMATE, SMALL_PASS_ESTIMATE = range(4)
#: A pass whose first error estimate is within this many goals computes a correction that small, and
#: its float32 rounding is relative to it (the solution of a 512 px blend's first pass stalls at about
#: 2e-5 of its size: ad hoc, the benchmarks' ellipse): far below the goal, so the estimate it stops on
#: needs no confirmation from a float64 residual (SMALL_PASS_ESTIMATE).
SMALL_PASS = 100.0

# The driver's per-channel arithmetic is written as loops over the (one to four) channels, not as
# NumPy expressions on the per-channel vectors: ``np.where``, ``np.minimum`` or ``a * b`` on arrays
# compile NumPy's broadcasting, its shape-mismatch error messages and their string formatting with
# them: 5.6 s of the masked blend's 35 s first compile, for arithmetic on three numbers.


@nb.njit(cache=True, nogil=True)
def _at_most(values, bounds, rate):
    """Whether ``values[c] <= bounds[c] * (1 - rate[c])`` for every channel."""
    for c in range(values.shape[0]):
        if not values[c] <= bounds[c] * (1.0 - rate[c]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _widen(values):
    """A float64 copy of the per-channel ``values``."""
    out = np.empty(values.shape[0])
    for c in range(values.shape[0]):
        out[c] = values[c]
    return out


@nb.njit(cache=True, nogil=True)
def _ratio(num, den, out):
    """``out = num / den`` per channel, 0 where ``den`` is not positive; returns ``out``."""
    for c in range(num.shape[0]):
        out[c] = num[c] / den[c] if den[c] > 0.0 else 0.0
    return out


@nb.njit(cache=True, nogil=True)
def pcg(x, r, p, ap, z, stencils, wts, spans, f, u, rows, scratch, inverse, cells_i, cells_j,
        rtol, atol, rate, max_iter, z_bits, top_bits, top, rz_out):
    """Preconditioned CG on padded float32 arrays (``r`` holds ``b`` on entry and is ``f[0]``, ``z`` is ``u[0]``).

    Stops when every channel's residual is within ``rtol`` of its start, or when every channel's
    estimated error ``max |B r|`` is within ``atol (1 - rate)`` (per channel; zeros: never), where
    ``rate`` (updated in place) is the estimate's observed fall per iteration.  ``z_bits`` is
    ``z``'s uint32 view; ``top_bits`` (its float32 view ``top``) and ``rz_out`` receive the cycle's
    reductions (:func:`prolong_smooth`).  Returns
    (iterations, one of NOT_CONVERGED, RESIDUAL, ERROR_ESTIMATE, SMALL_PASS_ESTIMATE): the last
    when the estimate stopped a pass that started within :data:`SMALL_PASS` goals.
    """
    deg, wt, fine_spans = stencils[0][0], stencils[0][1], spans[0]
    C = r.shape[0]
    target = dot(r, r, fine_spans)
    # ``zero`` stays zero (the plain bounds, the first direction); ``steps`` holds alpha, then beta
    zero, steps = np.zeros(C), np.zeros(C)
    done = True
    estimate = True
    for c in range(C):
        target[c] = rtol * rtol * target[c]
        done &= target[c] == 0.0
        estimate &= atol[c] > 0.0
    if done:
        return 0, RESIDUAL
    run_cycle(stencils, wts, spans, f, u, rows, scratch, inverse, cells_i, cells_j, z_bits, top_bits, rz_out)
    small = estimate
    rz = rz_out.copy()
    if estimate:
        first = _widen(top)
        if _at_most(first, atol, rate):
            return 0, ERROR_ESTIMATE
        for c in range(C):
            small &= first[c] <= SMALL_PASS * atol[c]
    else:
        first = zero
    beta = zero  # the first direction is z itself
    for it in range(1, max_iter + 1):
        pap = direction_apply_dot(p, z, beta, deg, wt, fine_spans, ap)  # p = z + beta p, then A p
        rr = step(x, r, p, ap, _ratio(rz, pap, steps), fine_spans)
        floor = _at_most(rr, target, zero)
        if floor and not estimate:
            return it, RESIDUAL
        run_cycle(stencils, wts, spans, f, u, rows, scratch, inverse, cells_i, cells_j, z_bits, top_bits, rz_out)
        rz_new = rz_out.copy()
        if estimate:
            # B r misses the error by about 1 / (1 - rho), rho the cycle's contraction, which shows in
            # how slowly the estimate falls: trust it less the slower CG converges (e.g. a mask
            # pinned by a single boundary pixel, where the estimate alone is 4x short).
            latest = _widen(top)
            for c in range(C):
                rate[c] = min((latest[c] / max(first[c], 1e-300)) ** (1.0 / it), 0.9)
            if _at_most(latest, atol, rate):
                return it, SMALL_PASS_ESTIMATE if small else ERROR_ESTIMATE
        if floor:  # float32 can go no further: the caller refines with a float64 residual
            return it, RESIDUAL
        beta = _ratio(rz_new, rz, steps)  # steps: beta now, alpha after the next direction
        rz = rz_new
    return max_iter, NOT_CONVERGED
