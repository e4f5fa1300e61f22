"""Aggregation multigrid for the masked 5-point Laplacian: the preconditioner of the exact masked solve.

A mask that is not a rectangle leaves no fast transform for the exact system, and the earlier
preconditioner (the box solver on the mask's bounding box, a fictitious domain) needed 14-50
conjugate-gradient iterations, each a full transform of the box.  Multigrid removes the error at
every scale instead, at a few sweeps over the pixels per iteration:

* **Coarse levels by aggregation**: each coarse cell is a 2x2 block of fine cells, prolongation
  copies a cell's value to its block and restriction sums the block (``R = P^T``).  The coarse
  operators are the exact Galerkin products ``R A P``, which stay 5-point stencils on any mask —
  holes, thin bridges, disconnected parts — so nothing about the mask's geometry is approximated.
* **The cycle**: one red-black Gauss-Seidel sweep before and after the coarse correction, which
  is scaled by 1.5 (plain aggregation under-corrects smooth errors); the finest level visits level 1
  once, every coarser level visits the next twice (W-cycles: each coarse level costs a quarter of
  the one above it, so visiting twice is cheap there and makes up for aggregation's weak coarse
  correction); the coarsest level (at most a hundred unknowns) is solved directly.  Against
  W-cycles on every level: 10-12 iterations instead of 8, each a third cheaper, and positive
  definite under fewer conditions (:data:`OVER_CORRECTION`).
* **As a CG preconditioner** the cycle is symmetric (red then black before, black then red after,
  ``R = P^T``): the iteration count does not grow with the mask's size (mesh-independent).
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
from numba.typed import List

from .blas import single_threaded_blas

#: Aggregation under-corrects smooth errors by about half; this scaling restores most of it.
#: It keeps the cycle positive definite: a symmetric cycle with Gauss-Seidel smoothing (splitting
#: ``M``) is ``B = M^-T D M^-1 + X^T (s P B_c P^T) X`` with ``X = I - A M^-1``, positive definite
#: whenever the coarse cycle ``B_c`` is, whatever the scale ``s``.  Visiting the coarse level twice
#: (a W-cycle) puts ``2 K - K A K``, ``K = s P B_c P^T``, in place of ``K``, which also needs
#: ``s B_c A_c <= 2``: a condition on how far the coarse cycle over-corrects, which the finest
#: level, visiting level 1 once, does not depend on (:func:`cycle_schedule`).
OVER_CORRECTION = 1.5
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

# Layout shared by the kernels.  Every level's arrays are padded: one ring of zeros around the box,
# rounded up to even sizes, so the kernels need no bounds checks and a 2x2 block never leaves the
# array.  All vectors are zero off the mask, and the stencils are zero there too, which keeps them
# zero without branches.  ``spans[i] = (first_0, last_0 + 1, first_1, last_1 + 1, ...)`` are the
# padded column ranges a row touches, zero-filled: a row's masked runs, runs less than
# :data:`SPAN_GAP` apart merged (a ring's hole, the gaps between an object's parts are skipped;
# short gaps cost less than another loop).
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
    """Padded length of ``n`` cells: a ring of zeros on both sides, rounded up to even."""
    return 2 * ((n + 1) // 2) + 2


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
def _block_spans(spans, coarse_rows):
    """Padded column ranges of every coarse row's 2x2 blocks: the union of its two fine rows' ranges.

    Padded fine column ``j`` belongs to coarse column ``(j + 1) // 2``; ranges less than
    :data:`SPAN_GAP` apart are merged, as in :func:`_row_spans`.
    """
    K = spans.shape[1] // 2
    merged = np.zeros((coarse_rows, 4 * K), np.uint64)  # up to 2 K ranges: the two rows' may interleave
    most = 1
    # A coarse level's padding can hold one more row than the fine level has blocks for.
    for I in range(1, min(coarse_rows - 1, spans.shape[0] // 2)):
        upper, lower = spans[2 * I - 1], spans[2 * I]
        a = b = 0  # the next range of each fine row (both sorted): merge them in order of start
        count = -1
        while True:
            take_upper = a < K and upper[2 * a + 1] > 0
            take_lower = b < K and lower[2 * b + 1] > 0
            if not (take_upper or take_lower):
                break
            if take_upper and take_lower:
                take_upper = upper[2 * a] <= lower[2 * b]
            if take_upper:
                first, end = np.int64(upper[2 * a]), np.int64(upper[2 * a + 1])
                a += 1
            else:
                first, end = np.int64(lower[2 * b]), np.int64(lower[2 * b + 1])
                b += 1
            lo, hi = (first + 1) >> 1, (end >> 1) + 1  # the coarse cells of fine columns [first, end)
            if count >= 0 and lo - np.int64(merged[I, 2 * count + 1]) < SPAN_GAP:
                if hi > np.int64(merged[I, 2 * count + 1]):
                    merged[I, 2 * count + 1] = hi
            else:
                count += 1
                merged[I, 2 * count], merged[I, 2 * count + 1] = lo, hi
        most = max(most, count + 1)
    return np.ascontiguousarray(merged[:, : 2 * most])


@nb.njit(cache=True, nogil=True)
def _degree(i, j, h, w, sides):
    """The fine Laplacian's diagonal at box pixel ``(i, j)``: 4, less one per side on the image border."""
    return 4.0 - ((i == 0) & sides[0]) - ((i == h - 1) & sides[1]) - ((j == 0) & sides[2]) - ((j == w - 1) & sides[3])


@nb.njit(cache=True, nogil=True)
def fine_stencil_coarsened(inside, sides):
    """The Galerkin operator ``R A P`` of the fine masked Laplacian: level 1's 5 stencil arrays and its mask."""
    h, w = inside.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    st = np.zeros((5, h2, w2), np.float32)  # centre, north, south, west, east
    in2 = np.zeros((h2, w2), np.bool_)
    for i in range(h):
        for j in range(w):
            if not inside[i, j]:
                continue
            I, J = i // 2, j // 2
            in2[I, J] = True
            st[0, I, J] += _degree(i, j, h, w, sides)
            if i > 0 and inside[i - 1, j]:
                st[0 if (i - 1) // 2 == I else 1, I, J] -= 1.0
            if i < h - 1 and inside[i + 1, j]:
                st[0 if (i + 1) // 2 == I else 2, I, J] -= 1.0
            if j > 0 and inside[i, j - 1]:
                st[0 if (j - 1) // 2 == J else 3, I, J] -= 1.0
            if j < w - 1 and inside[i, j + 1]:
                st[0 if (j + 1) // 2 == J else 4, I, J] -= 1.0
    return st, in2


@nb.njit(cache=True, nogil=True)
def coarsen(st, inside):
    """``R A P`` of a stencil level: the next level's 5 stencil arrays and mask."""
    _, h, w = st.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    out = np.zeros((5, h2, w2), np.float32)
    in2 = np.zeros((h2, w2), np.bool_)
    for i in range(h):
        for j in range(w):
            if not inside[i, j]:
                continue
            I, J = i // 2, j // 2
            in2[I, J] = True
            out[0, I, J] += st[0, i, j]
            out[0 if (i - 1) // 2 == I else 1, I, J] += st[1, i, j]
            out[0 if (i + 1) // 2 == I else 2, I, J] += st[2, i, j]
            out[0 if (j - 1) // 2 == J else 3, I, J] += st[3, i, j]
            out[0 if (j + 1) // 2 == J else 4, I, J] += st[4, i, j]
    return out, in2


# --- Row operations.  A level is described by its stencil planes ``st``: the fine level is
# matrix-free, (degree, mask, 1/degree) — the degree is 4, less on the image border, and every
# masked neighbour is -1; a coarse level stores its Galerkin stencil, (centre, north, south, west,
# east, 1/centre).  All planes are zero off the mask. ----------------------------------------------


@nb.njit(cache=True, nogil=True)
def smooth_row(u, f, st, spans, i, color, from_zero, scratch):
    """Gauss-Seidel update of row ``i``'s pixels of one colour (``(i + j) % 2 == color``).

    With ``from_zero`` ``u`` is taken as zero: those pixels get ``f / centre``, the other colour's 0
    (the sweep's second half sets them).  ``scratch`` is a float32 row of at least the padded width.

    On the finest level every column of a span is computed and the other colour's keep their value
    (a select) instead of a loop over every second column: unit-stride loops vectorise, strided ones
    do not (1.3-1.5x on that level's sweeps at 512 px, the same values).  The new row goes to
    ``scratch`` and is copied back: written in place, each column would read its west neighbour's
    store, a dependence that keeps LLVM from vectorising (no value changes: a pixel reads only the
    other colour, which the select leaves as it was).  Coarse levels keep the strided loops for full
    updates: their rows are short, and the select's second loop cost more than it saved there in
    whole cycles (at 2048 px too: level 1's full sweeps the same, the cycle within noise).
    """
    one, two = np.uint64(1), np.uint64(2)
    parity = (np.uint64(i) + np.uint64(color)) & one
    fine = st.shape[0] == 3
    rc = st[2, i] if fine else st[5, i]
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        start = j0 + ((j0 + parity) & one)
        for c in range(u.shape[0]):
            un, uu, us, fr = u[c, i - 1], u[c, i], u[c, i + 1], f[c, i]
            if from_zero:
                # The other colour's pixels get 0, not their stale values: the sweep's second half
                # overwrites them before anything reads them, so the values are the same as a loop over
                # every second column's, in one unit-stride (vectorised) loop: 1.3-1.8x per level at 2048 px.
                for j in range(j0, j1):
                    uu[j] = rc[j] * fr[j] if ((j + parity) & one) == 0 else np.float32(0.0)
            elif fine:
                for j in range(j0, j1):
                    v = rc[j] * (fr[j] + un[j] + us[j] + uu[j - one] + uu[j + one])
                    scratch[j] = v if ((j + parity) & one) == 0 else uu[j]
                for j in range(j0, j1):
                    uu[j] = scratch[j]
            else:
                sn, ss, sw, se = st[1, i], st[2, i], st[3, i], st[4, i]
                for j in range(start, j1, two):
                    uu[j] = rc[j] * (fr[j] - sn[j] * un[j] - ss[j] * us[j] - sw[j] * uu[j - one] - se[j] * uu[j + one])


@nb.njit(cache=True, nogil=True)
def residual_restrict_rows(u, f, st, block_spans, row, out, I):
    """``out[:, I] = R (f - A u)`` for coarse row ``I``: the residuals of fine rows ``2I - 1`` and ``2I`` summed per block."""
    one, two = np.uint64(1), np.uint64(2)
    fine = st.shape[0] == 3
    for s in range(0, block_spans.shape[1], 2):
        J0, J1 = block_spans[I, s], block_spans[I, s + 1]
        if J1 == 0:
            return
        for k in range(2):
            i = 2 * I - 1 + k
            for c in range(u.shape[0]):
                un, uu, us, fr, rr = u[c, i - 1], u[c, i], u[c, i + 1], f[c, i], row[c, k]
                if fine:
                    dr, wr = st[0, i], st[1, i]
                    for j in range(two * J0 - one, two * J1 - one):
                        rr[j] = wr[j] * (fr[j] + un[j] + us[j] + uu[j - one] + uu[j + one]) - dr[j] * uu[j]
                else:
                    sc, sn, ss, sw, se = st[0, i], st[1, i], st[2, i], st[3, i], st[4, i]
                    for j in range(two * J0 - one, two * J1 - one):
                        rr[j] = fr[j] - sc[j] * uu[j] - sn[j] * un[j] - ss[j] * us[j] - sw[j] * uu[j - one] \
                            - se[j] * uu[j + one]
        for c in range(u.shape[0]):
            r0, r1, oc = row[c, 0], row[c, 1], out[c, I]
            for J in range(J0, J1):
                j = two * J - one
                oc[J] = r0[j] + r0[j + one] + r1[j] + r1[j + one]


@nb.njit(cache=True, nogil=True)
def prolong_row(u, e, scale, wt, spans, i):
    """``u += scale * P e`` on row ``i``: every masked cell takes its 2x2 block's coarse value."""
    one, two = np.uint64(1), np.uint64(2)
    I = (i + 1) >> 1
    wr = wt[i]
    for s in range(0, spans.shape[1], 2):
        j0, j1 = spans[i, s], spans[i, s + 1]
        if j1 == 0:
            return
        # Padded column j belongs to coarse column (j + 1) // 2: columns 2J - 1 and 2J share cell J.
        # Looping over cells (not columns) avoids the index arithmetic per pixel, so LLVM vectorises
        # it.  A range's cells may reach one column past it on each side, where the mask weight is 0
        # (ranges are SPAN_GAP apart, so no column is reached twice).
        J0, J1 = (j0 + one) >> one, (j1 - one + one) >> one
        for c in range(u.shape[0]):
            uu, er = u[c, i], e[c, I]
            for J in range(J0, J1 + one):
                v = scale * er[J]
                uu[two * J - one] += v * wr[two * J - one]
                uu[two * J] += v * wr[two * J]


# _LITERALS: a constant argument (``0``, ``False``) reaches a jitted callee as a literal type, and
# each literal value compiles the callee once more: smooth_row compiled three times and prolong_row
# twice, about 1.3 s of a cold first masked blend.  The sweeps below pass np.int64 / np.bool_ values.

# --- Sweeps.  Each walks the rows once, doing in one pass what would otherwise take two or three:
# a Gauss-Seidel sweep updates one colour on row i and the other colour on row i - 1 (the same
# arithmetic as two half-sweeps, as neither colour reads its own), and a coarse correction is added
# to a row just before the rows that read it. -----------------------------------------------------


@nb.njit(cache=True, nogil=True)
def smooth_residual_restrict(u, f, st, spans, block_spans, row, out, scratch):
    """A red-black Gauss-Seidel sweep from zero (red first), then ``out = R (f - A u)``, in one pass.

    The sweep updates red on row ``i`` and black on row ``i - 1`` (``scratch``: a float32 row).  A
    row's residual reads the rows above and below it, which are final once the sweep's second half
    has passed them, so each coarse row is restricted two fine rows behind the sweep, while they
    are still in cache: ``u`` and ``f`` are read from memory once, not twice (the same values as the
    whole sweep first, then every coarse row: tests/test_multigrid.py).
    """
    H = st.shape[1]
    first, yes, no = np.int64(0), np.bool_(True), np.bool_(False)  # not literals: see _LITERALS
    blocks = min(out.shape[1] - 1, H // 2)  # coarse rows 1 .. blocks - 1 (the padding ring excluded)
    done = 0
    for i in range(1, H):
        if i < H - 1:
            smooth_row(u, f, st, spans, i, first, yes, scratch)
        if i > 1:
            smooth_row(u, f, st, spans, i - 1, 1 - first, no, scratch)
        # Rows up to i - 1 are final: coarse row I reads fine rows 2I - 2 .. 2I + 1.
        while done + 1 < blocks and 2 * (done + 1) + 1 <= i - 1:
            done += 1
            residual_restrict_rows(u, f, st, block_spans, row, out, done)
    while done + 1 < blocks:
        done += 1
        residual_restrict_rows(u, f, st, block_spans, row, out, done)


@nb.njit(cache=True, nogil=True)
def prolong_residual_restrict(u, e, scale, wt, spans, f, st, block_spans, row, out):
    """``u += scale * P e``, then ``out = R (f - A u)``, in one pass."""
    H = st.shape[1]
    done = 0
    for I in range(1, min(out.shape[1] - 1, H // 2)):
        while done < min(2 * I + 1, H - 2):
            done += 1
            prolong_row(u, e, scale, wt, spans, done)
        residual_restrict_rows(u, f, st, block_spans, row, out, I)
    while done < H - 2:
        done += 1
        prolong_row(u, e, scale, wt, spans, done)


@nb.njit(cache=True, nogil=True)
def prolong_smooth(u, e, scale, wt, spans, f, st, first, scratch):
    """``u += scale * P e``, then a Gauss-Seidel sweep (colour ``first`` first), in one pass."""
    H = st.shape[1]
    first, no = np.int64(first), np.bool_(False)  # not literals: see _LITERALS
    prolong_row(u, e, scale, wt, spans, np.int64(1))
    for i in range(1, H):
        if i + 1 < H - 1:
            prolong_row(u, e, scale, wt, spans, i + 1)
        if i < H - 1:
            smooth_row(u, f, st, spans, i, first, no, scratch)
        if i > 1:
            smooth_row(u, f, st, spans, i - 1, 1 - first, no, scratch)


# --- The cycle, run by one compiled loop over a precomputed schedule ----------------------------
# A recursive cycle in Python would cost a few hundred interpreter calls per iteration, more
# than the arithmetic below 1024 px; the schedule flattens it once per hierarchy.

PRE_RESTRICT, PROLONG_RESTRICT, SOLVE, PROLONG_POST = range(4)


def cycle_schedule(levels: int) -> np.ndarray:
    """The (operation, level) steps of one cycle over ``levels`` levels (the last solved exactly).

    The finest level visits level 1 once (a V-cycle step); every coarser level visits the next
    twice (W-cycles), except the exact coarsest solve.  Smoothing is red then black before the
    coarse corrections and black then red after, so the cycle is a symmetric operator, as
    conjugate gradients needs (see :data:`OVER_CORRECTION` for why it is also positive definite).
    """
    def visit(level):
        if level == levels - 1:
            return [(SOLVE, level)]
        ops = [(PRE_RESTRICT, level)] + visit(level + 1)
        if 0 < level and level + 1 < levels - 1:  # the finest level and the exact coarsest solve: one visit
            ops += [(PROLONG_RESTRICT, level)] + visit(level + 1)
        return ops + [(PROLONG_POST, level)]
    return np.array(visit(0), np.int64)


def correction_scales(levels: int) -> np.ndarray:
    """Per level, the scale of the coarse corrections added to it.

    :data:`OVER_CORRECTION`, but 1 on the level above the exact coarsest solve: there the
    correction is the exact projection, whose ``B A`` lies in (0, 1]; scaled by 1.5 it reached
    1.5 on modes the aggregates represent exactly (e.g. the near-constant mode of a mask pinned by
    one pixel), and the W-cycle above, ``1.5 x 1.5 > 2``, turned indefinite.  With it, each W-level
    (``(I - K A)^2``, ``K A`` within [0, 1.5]) keeps ``B A`` in (0, 1] too, by induction.
    """
    scales = np.full(levels, OVER_CORRECTION, np.float32)
    if levels >= 2:
        scales[levels - 2] = 1.0
    return scales


@nb.njit(cache=True, nogil=True, fastmath=True)
def coarsest_solve(f, u, inverse, rows, cols):
    """``u = A^-1 f`` on the coarsest level's masked cells (a dense inverse: at most :data:`COARSEST`)."""
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
def run_cycle(schedule, scales, stencils, wts, spans, block_spans, f, u, rows, inverse, cells_i, cells_j):
    """``u[0] ≈ A^-1 f[0]`` by one cycle; level ``k``'s right-hand side and solution are ``f[k]``, ``u[k]``.

    ``scales[k]`` scales the coarse corrections added to level ``k`` (:func:`correction_scales`).
    """
    for k in range(schedule.shape[0]):
        op, lv = schedule[k, 0], schedule[k, 1]
        if op == PRE_RESTRICT:
            smooth_residual_restrict(u[lv], f[lv], stencils[lv], spans[lv], block_spans[lv], rows[lv], f[lv + 1],
                                     rows[lv][0, 0])
        elif op == PROLONG_RESTRICT:
            prolong_residual_restrict(u[lv], u[lv + 1], scales[lv], wts[lv], spans[lv], f[lv], stencils[lv],
                                      block_spans[lv], rows[lv], f[lv + 1])
        elif op == SOLVE:
            coarsest_solve(f[lv], u[lv], inverse, cells_i, cells_j)
        else:
            prolong_smooth(u[lv], u[lv + 1], scales[lv], wts[lv], spans[lv], f[lv], stencils[lv], 1, rows[lv][0, 0])


@nb.njit(cache=True, nogil=True)
def build_levels(inside, sides, coarsest):
    """Every level's arrays in the padded layout, as typed lists, for :class:`Hierarchy`.

    Built here rather than in Python because a typed list's methods called from the interpreter
    (creating, appending, indexing, slicing) are compiled on first use in every process and not
    cached: about 2 s before the first masked blend of each process, DataLoader workers included.

    Returns
    -------
    stencils, wts, spans, block_spans : typed lists, one entry per level (``block_spans`` one fewer)
    fine_deg, fine_wt, fine_spans : the finest level's degree and mask planes and row spans
    levels : int
    st, mask : the coarsest level's unpadded stencil (5, h, w) and mask, for its dense inverse
    """
    h, w = inside.shape
    H, W = _padded(h), _padded(w)
    # The finest level is matrix-free: (degree, mask, 1 / degree); the degree is 4, less on the image border.
    fine = np.zeros((3, H, W), np.float32)
    for i in range(h):
        for j in range(w):
            if inside[i, j]:
                deg = _degree(i, j, h, w, sides)
                fine[0, i + 1, j + 1] = deg
                fine[1, i + 1, j + 1] = 1.0
                fine[2, i + 1, j + 1] = 1.0 / deg
    stencils, wts, spans = List(), List(), List()
    stencils.append(fine)
    wts.append(fine[1])
    spans.append(_row_spans(inside, H))
    st, mask = fine_stencil_coarsened(inside, sides)
    while True:
        hc, wc = mask.shape
        Hc, Wc = _padded(hc), _padded(wc)
        level = np.zeros((6, Hc, Wc), np.float32)  # centre, north, south, west, east, 1 / centre
        wt = np.zeros((Hc, Wc), np.float32)
        for i in range(hc):
            for j in range(wc):
                for k in range(5):
                    level[k, i + 1, j + 1] = st[k, i, j]
                if mask[i, j]:
                    level[5, i + 1, j + 1] = np.float32(1.0) / st[0, i, j]
                    wt[i + 1, j + 1] = 1.0
        stencils.append(level)
        wts.append(wt)
        spans.append(_row_spans(mask, Hc))
        if mask.sum() <= coarsest or min(hc, wc) <= 2:
            break
        st, mask = coarsen(st, mask)
    block_spans = List()
    for k in range(len(stencils) - 1):
        block_spans.append(_block_spans(spans[k], stencils[k + 1].shape[1]))
    return stencils, wts, spans, block_spans, fine[0], fine[1], spans[0], len(stencils), st, mask


@nb.njit(cache=True, nogil=True)
def level_buffers(stencils, r, z):
    """Right-hand sides, solutions and row scratch of every level: ``f[0] = r``, ``u[0] = z``, zeros below."""
    C = r.shape[0]
    f, u, rows = List(), List(), List()
    f.append(r)
    u.append(z)
    for k in range(len(stencils)):
        shape = stencils[k].shape
        if k > 0:
            f.append(np.zeros((C, shape[1], shape[2]), np.float32))
            u.append(np.zeros((C, shape[1], shape[2]), np.float32))
        rows.append(np.zeros((C, 2, shape[2]), np.float32))
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
        # Per level: stencil planes, mask weight, row spans (padded layout), and block_spans[k], the
        # 2x2 blocks restricted from level k into level k + 1.  The finest level's arrays also
        # come on their own, so that nothing here indexes a typed list (see build_levels).
        (self.stencils, self.wts, self.spans, self.block_spans, self.fine_deg, self.fine_wt, self.fine_spans,
         levels, st, mask) = build_levels(inside, sides, COARSEST)
        self.levels = int(levels)
        self.padded = self.fine_deg.shape
        cells = np.nonzero(mask)
        self.cells_i, self.cells_j = cells[0] + 1, cells[1] + 1  # padded coordinates
        with single_threaded_blas():
            self.inverse = np.linalg.inv(_dense(st, mask, np.flatnonzero(mask.ravel()))).astype(np.float32)
        self.schedule = cycle_schedule(self.levels)
        self.scales = correction_scales(self.levels)

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
        next pass's first estimate, from the float64 residual.  A relative residual says nothing
        about the error in the solution's units — a smooth error hides behind a small residual —
        so this is the criterion for "exact to a fraction of a grey level" (tested against the
        exact error in tests/test_multigrid.py).

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
        p, ap, z = (np.zeros_like(r) for _ in range(3))
        # The solution: the first pass's own float32 array while it is the only pass that iterated (as a
        # rule), and the passes' sum in float64 after a second one (float32 would floor the residual).
        # Not allocating the float64 sum up front saves writing a fresh array of twice the box's bytes:
        # 5% of a 2048 px solve.
        x = None
        f, u, rows = level_buffers(self.stencils, r, z)
        z_bits, top_bits = z.view(np.uint32), np.zeros(C, np.uint32)  # the error estimate's maximum (max_abs_dot)
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
            d = np.zeros_like(r)  # no page of it is written unless this pass iterates
            iterations, status = pcg(
                self.schedule, self.scales, d, r, p, ap, z, self.stencils, self.wts, self.spans, self.block_spans,
                f, u, rows, self.inverse, self.cells_i, self.cells_j, inner, error_goal, rate, max_iter, z_bits, top_bits,
                top)
            total += iterations
            if status == NOT_CONVERGED:
                break
            if status == ERROR_ESTIMATE and iterations == 0:  # confirmed on a float64 residual
                return self._inner(x, r), total, True
            if x is None:
                x = d
            else:
                x = x.astype(np.float64) if x.dtype != np.float64 else x
                x += d
            # The float64 residual, and for an estimate the next pass's first check: a float32 pass's
            # own residual drifts from the true one on badly conditioned masks.
            left = np.sqrt(residual64(x, rhs, self.fine_deg, self.fine_wt, self.fine_spans, r))
            if (left <= goal).all():
                return self._inner(x, r), total, True
        return self._inner(x, r), total, False

    def _inner(self, x, r):
        """The solution on the box (``x`` unpadded; zeros like ``r`` when no pass iterated)."""
        h, w = self.shape
        return (np.zeros_like(r) if x is None else x)[:, 1 : h + 1, 1 : w + 1]


def _dense(st: np.ndarray, mask: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The coarsest level's operator as a dense matrix over its masked cells."""
    h, w = mask.shape
    index = -np.ones(h * w, np.int64)
    index[cells] = np.arange(cells.size)
    A = np.zeros((cells.size, cells.size))
    for k, p in enumerate(cells):
        i, j = divmod(int(p), w)
        A[k, k] = st[0, i, j]
        for di, dj, s in ((-1, 0, 1), (1, 0, 2), (0, -1, 3), (0, 1, 4)):
            ii, jj = i + di, j + dj
            if 0 <= ii < h and 0 <= jj < w and index[ii * w + jj] >= 0:
                A[k, index[ii * w + jj]] += st[s, i, j]
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


@nb.njit(cache=True, nogil=True, fastmath=True)
def max_abs_dot(bits, r, z, spans, top_bits, top):
    """``max |z|`` and ``<r, z>`` per channel (float64 (C,) each), in one pass over ``z``.

    Parameters
    ----------
    bits : uint32 (C, H, W)
        ``z.view(np.uint32)`` (finite values): the maximum is taken on the bits (:func:`_max_abs_row`).
    r, z : float32 (C, H, W)
    spans : the rows' column ranges
    top_bits : uint32 (C,), scratch
    top : float32 (C,)
        ``top_bits.view(np.float32)``: where the maxima are read back as floats.
    """
    C = bits.shape[0]
    for c in range(C):
        top_bits[c] = 0
    rz = np.zeros(C)
    for i in range(1, spans.shape[0] - 1):
        _max_abs_row(bits, spans, i, top_bits)
        _dot_row(r, z, spans, i, rz)
    out = np.zeros(C)
    for c in range(C):
        out[c] = top[c]
    return out, rz


NOT_CONVERGED, RESIDUAL, ERROR_ESTIMATE = range(3)

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
def _ratio(num, den, out):
    """``out = num / den`` per channel, 0 where ``den`` is not positive; returns ``out``."""
    for c in range(num.shape[0]):
        out[c] = num[c] / den[c] if den[c] > 0.0 else 0.0
    return out


@nb.njit(cache=True, nogil=True)
def pcg(schedule, scales, x, r, p, ap, z, stencils, wts, spans, block_spans, f, u, rows, inverse, cells_i, cells_j,
        rtol, atol, rate, max_iter, z_bits, top_bits, top):
    """Preconditioned CG on padded float32 arrays (``r`` holds ``b`` on entry and is ``f[0]``, ``z`` is ``u[0]``).

    Stops when every channel's residual is within ``rtol`` of its start, or when every channel's
    estimated error ``max |B r|`` is within ``atol (1 - rate)`` (per channel; zeros: never), where
    ``rate`` (updated in place) is the estimate's observed fall per iteration.  ``z_bits``,
    ``top_bits`` and ``top`` are :func:`max_abs_dot`'s view of ``z`` and its scratch.  Returns
    (iterations, one of NOT_CONVERGED, RESIDUAL, ERROR_ESTIMATE).
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
    run_cycle(schedule, scales, stencils, wts, spans, block_spans, f, u, rows, inverse, cells_i, cells_j)
    if estimate:
        first, rz = max_abs_dot(z_bits, r, z, fine_spans, top_bits, top)
        if _at_most(first, atol, rate):
            return 0, ERROR_ESTIMATE
    else:
        first, rz = zero, dot(r, z, fine_spans)
    beta = zero  # the first direction is z itself
    for it in range(1, max_iter + 1):
        pap = direction_apply_dot(p, z, beta, deg, wt, fine_spans, ap)  # p = z + beta p, then A p
        rr = step(x, r, p, ap, _ratio(rz, pap, steps), fine_spans)
        floor = _at_most(rr, target, zero)
        if floor and not estimate:
            return it, RESIDUAL
        run_cycle(schedule, scales, stencils, wts, spans, block_spans, f, u, rows, inverse, cells_i, cells_j)
        if estimate:
            # B r misses the error by about 1 / (1 - rho), rho the cycle's contraction, which shows in
            # how slowly the estimate falls: trust it less the slower CG converges (e.g. a mask
            # pinned by a single boundary pixel, where the estimate alone is 4x short).
            latest, rz_new = max_abs_dot(z_bits, r, z, fine_spans, top_bits, top)
            for c in range(C):
                rate[c] = min((latest[c] / max(first[c], 1e-300)) ** (1.0 / it), 0.9)
            if _at_most(latest, atol, rate):
                return it, ERROR_ESTIMATE
        else:
            rz_new = dot(r, z, fine_spans)
        if floor:  # float32 can go no further: the caller refines with a float64 residual
            return it, RESIDUAL
        beta = _ratio(rz_new, rz, steps)  # steps: beta now, alpha after the next direction
        rz = rz_new
    return max_iter, NOT_CONVERGED
