"""Which multigrid would make the exact masked solve cheaper?  A convergence study (no timing).

Run:  python benchmarks/multigrid_study.py [--sizes 256 512] [--masks ellipse ring object] [--json out.json]

Counts the conjugate-gradient iterations to a relative residual of 1e-5 on ``bench_poisson.py``'s
masks and images (first channel) for four preconditioners of the masked 5-point Laplacian:

* ``shipped`` — what ``poisson_blend`` ships (:mod:`nsa_augment.poisson.multigrid`): bilinear
  interpolation between levels, Galerkin coarse operators (9-point stencils), red-black Gauss-Seidel
  row by row, a V(1,1)-cycle, in float32.  Until the 21st session it shipped 2x2 aggregates with
  W-cycles and a 1.5x over-corrected coarse correction: 9-11 iterations at 256-1024 px.
* ``v-bilinear`` — the same hierarchy as a SciPy prototype (float64, lexicographic Gauss-Seidel):
  how far the shipped float32 kernels are from the method's own count.
* ``v-aggregation`` — 2x2 aggregates (piecewise-constant prolongation) in a plain V(1,1)-cycle.
* ``v-smoothed-3x3`` — smoothed aggregation (Vanek, Mandel & Brezina 1996): 3x3 aggregates, the
  prolongation smoothed by one damped-Jacobi step (``P = (I - 2/3 D^-1 A) P_agg``), Galerkin coarse
  operators (9-point stencils on a grid 9x smaller), a V(1,1)-cycle with symmetric (forward, then
  backward) Gauss-Seidel; no over-correction, so the cycle is symmetric positive definite by
  construction.

The three V-cycle variants are SciPy prototypes (sparse matrices, float64, lexicographic smoothing):
they measure convergence, not speed.  What a cycle costs is the other half of the question
(docs/performance-log.md gives the shipped cycle's time, *Poisson blending*, 21st session).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_poisson import load_images, make_mask  # noqa: E402

from nsa_augment.io import write_text  # noqa: E402  (atomic: an interrupted run keeps the previous file)
from nsa_augment.poisson import kernels  # noqa: E402
from nsa_augment.poisson.masked_solver import masked_laplacian_matrix  # noqa: E402
from nsa_augment.poisson.multigrid import Hierarchy  # noqa: E402

RTOL = 1e-5
#: Damping of the prolongation smoother: 4 / (3 rho(D^-1 A)) with rho = 2 for the 5-point Laplacian.
OMEGA = 2.0 / 3.0
COARSEST = 100


def galerkin_levels(A: sp.csr_matrix, coords: tuple[np.ndarray, np.ndarray], prolongation) -> list[dict]:
    """Levels ``A``, ``P^T A P``, ... down to :data:`COARSEST` unknowns.

    ``prolongation(A, rows, cols)`` returns a level's ``P`` and its coarse cells' grid coordinates.
    Returns per level ``A``; every level but the last its prolongation ``P``; the last a dense ``inverse``.
    """
    levels = []
    rows, cols = coords
    while True:
        levels.append({"A": A.tocsr()})
        if A.shape[0] <= COARSEST:
            break
        P, rows, cols = prolongation(A, rows, cols)
        levels[-1]["P"] = P
        A = (P.T @ A @ P).tocsr()
    levels[-1]["inverse"] = np.linalg.inv(levels[-1]["A"].toarray())
    return levels


def aggregation(size: int, smooth: bool):
    """Prolongation from ``size`` x ``size`` blocks of the grid (aggregates), smoothed or not.

    ``smooth``: one damped-Jacobi step on the piecewise-constant prolongation (smoothed aggregation).
    """
    def prolongation(A, rows, cols):
        width = int(cols.max()) // size + 1
        blocks, agg = np.unique((rows // size) * width + cols // size, return_inverse=True)
        P = sp.csr_matrix((np.ones(A.shape[0]), (np.arange(A.shape[0]), agg)), shape=(A.shape[0], blocks.size))
        if smooth:
            P = (P - OMEGA * sp.diags(1.0 / A.diagonal()) @ A @ P).tocsr()
        return P, blocks // width, blocks % width
    return prolongation


def bilinear(A, rows, cols):
    """The shipped prolongation: every second cell of every second row is a coarse cell, ``P`` bilinear.

    Fine cell ``i`` (per axis) lies on coarse cell ``i / 2`` when even, between ``(i - 1) / 2`` and
    ``(i + 1) / 2`` (half of each) when odd; a coarse cell exists where some masked cell interpolates
    from it.
    """
    width = int(cols.max()) // 2 + 2
    entries = []  # (fine index, coarse key, weight)
    for a in (0, 1):
        for b in (0, 1):
            reach = ((a == 0) | (rows % 2 == 1)) & ((b == 0) | (cols % 2 == 1))
            weight = np.where(rows % 2 == 1, 0.5, 1.0) * np.where(cols % 2 == 1, 0.5, 1.0)
            keys = (rows // 2 + a) * width + cols // 2 + b
            entries.append((np.flatnonzero(reach), keys[reach], weight[reach]))
    fine, keys, weights = (np.concatenate(parts) for parts in zip(*entries))
    coarse, column = np.unique(keys, return_inverse=True)
    P = sp.csr_matrix((weights, (fine, column)), shape=(A.shape[0], coarse.size))
    return P, coarse // width, coarse % width


def v_cycle(levels: list[dict], b: np.ndarray, level: int = 0) -> np.ndarray:
    """One V(1,1)-cycle from zero: forward Gauss-Seidel, coarse correction, backward Gauss-Seidel."""
    lv = levels[level]
    if "inverse" in lv:
        return lv["inverse"] @ b
    A = lv["A"]
    x = spla.spsolve_triangular(sp.tril(A, format="csr"), b, lower=True)
    x = x + lv["P"] @ v_cycle(levels, lv["P"].T @ (b - A @ x), level + 1)
    return x + spla.spsolve_triangular(sp.triu(A, format="csr"), b - A @ x, lower=False)


def pcg_iterations(A: sp.csr_matrix, b: np.ndarray, precondition, max_iter: int = 200) -> tuple[int, np.ndarray]:
    """Preconditioned CG from zero to a relative residual of :data:`RTOL`: (iterations, solution)."""
    x, r = np.zeros_like(b), b.copy()
    z = precondition(r)
    p, rz, norm = z.copy(), r @ z, np.linalg.norm(b)
    for it in range(1, max_iter + 1):
        ap = A @ p
        alpha = rz / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        if np.linalg.norm(r) <= RTOL * norm:
            return it, x
        z = precondition(r)
        rz, rz_old = r @ z, rz
        p = z + rz / rz_old * p
    return -1, x


def study(size: int, mask_name: str) -> dict:
    """Iterations of the four preconditioners on one mask, and the hierarchies' level sizes."""
    dst, src = load_images(size)
    mask = make_mask(mask_name, size)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    rhs, inside = kernels.assemble_rhs(dst, src, mask, 0, 0, y0, y1, x0, x1, kernels.NORMAL, 1.0)
    sides = (y0 == 0, y1 == size, x0 == 0, x1 == size)
    A = masked_laplacian_matrix(inside, sides).tocsr()
    b = rhs[0][inside]
    exact = spla.spsolve(A.tocsc(), b)
    out = {"size": size, "mask": mask_name, "unknowns": int(b.size)}
    _, shipped, _ = Hierarchy(inside, sides).solve(rhs[:1], RTOL, 200, 1)
    out["shipped"] = {"iterations": int(shipped)}
    coords = np.nonzero(inside)
    for name, prolongation in (("v-bilinear", bilinear), ("v-aggregation", aggregation(2, False)),
                               ("v-smoothed-3x3", aggregation(3, True))):
        levels = galerkin_levels(A, coords, prolongation)
        iterations, x = pcg_iterations(A, b, lambda r, lv=levels: v_cycle(lv, r))
        out[name] = {"iterations": iterations, "max_error": float(np.abs(x - exact).max()),
                     "level_unknowns": [lv["A"].shape[0] for lv in levels],
                     "coarse_stencil": [round(lv["A"].nnz / lv["A"].shape[0], 1) for lv in levels[1:3]]}
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--masks", nargs="+", default=["ellipse", "ring", "object"], choices=["ellipse", "ring", "object"])
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)
    results = []
    print(f"CG iterations to a relative residual of {RTOL:g} (first channel)")
    print(f"{'size':>5} {'mask':<8} {'unknowns':>9} {'shipped':>8} {'v-bilinear':>11} {'v-aggregation':>14} "
          f"{'v-smoothed-3x3':>15}  smoothed-3x3 levels (nonzeros per row of levels 1-2)")
    for size in args.sizes:
        for mask_name in args.masks:
            r = study(size, mask_name)
            sa = r["v-smoothed-3x3"]
            print(f"{size:>5} {mask_name:<8} {r['unknowns']:>9} {r['shipped']['iterations']:>8} "
                  f"{r['v-bilinear']['iterations']:>11} {r['v-aggregation']['iterations']:>14} "
                  f"{sa['iterations']:>15}  {sa['level_unknowns']} "
                  f"({', '.join(map(str, sa['coarse_stencil']))})", flush=True)
            results.append(r)
    if args.json:
        write_text(args.json, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
