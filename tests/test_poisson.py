"""The Poisson solver against its sparse-direct reference, its properties, and bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsa_augment import poisson_blend, poisson_blend_reference
from nsa_augment.poisson import box_solver, masked_solver

GRADIENTS = ["normal", "mixed", "interpolated"]


def _masks(h, w, rng):
    yy, xx = np.mgrid[:h, :w]
    ring = np.zeros((h, w), bool)
    ring[2:-2, 2:-2] = True
    ring[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = False  # a hole: the region is not simply connected
    two = np.zeros((h, w), bool)
    two[1:4, 1:5] = True
    two[h - 5 : h - 1, w - 6 : w - 2] = True  # disconnected
    diag = np.eye(h, w, dtype=bool)  # 1-pixel-wide, only corner-connected
    return {
        "rectangle": (yy > 2) & (yy < h - 3) & (xx > 1) & (xx < w - 4),
        "ellipse": ((yy - h / 2) / (h / 2.5)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1,
        "ring-with-hole": ring,
        "disconnected": two,
        "diagonal-line": diag,
        "row-line": (yy == h // 2) & (xx > 0),
        "random": rng.random((h, w)) < 0.55,
        "touches-top-left": (yy < h // 2) & (xx < w // 2),
        "touches-right": (yy > 3) & (yy < h - 2) & (xx >= w // 2),
        "full-width-band": (yy >= 3) & (yy < 9),
        "all-but-one": ~((yy == h // 2) & (xx == w // 3)),
        "single-pixel": (yy == 5) & (xx == 7),
        "corner-pixel": (yy == 0) & (xx == w - 1),
    }


@pytest.mark.parametrize("shape", [(24, 31), (17, 64), (40, 257 // 5)])
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_matches_sparse_direct_solve(shape, channels):
    rng = np.random.default_rng(sum(shape) + channels)
    h, w = shape
    dst = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    src = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    for name, mask in _masks(h, w, rng).items():
        for gradients in GRADIENTS:
            out = poisson_blend(dst.astype(np.float32), src.astype(np.float32), mask, gradients=gradients, factor=0.3)
            ref = poisson_blend_reference(dst, src, mask, gradients=gradients, factor=0.3)
            err = np.abs(out.astype(np.float64) - ref).max()
            assert err <= 0.01, (name, gradients, err)
            out8 = poisson_blend(dst, src, mask, gradients=gradients, factor=0.3)
            expected8 = np.clip(np.floor(ref + 0.5), 0, 255)
            # Rounding may flip where the exact value is within float error of .5.
            assert np.abs(out8.astype(np.float64) - expected8).max() <= 1, (name, gradients)
            assert (np.abs(out8.astype(np.float64) - ref) <= 0.5 + 0.01).reshape(-1)[
                ((ref >= 0) & (ref <= 255)).reshape(-1)
            ].all()


@pytest.mark.parametrize("size", [64, 128, 255, 256, 257, 299])
def test_large_rectangles_all_box_paths(size):
    """Sizes hitting the FFT path (255, 299: n + 1 = 256, 300) and the dense eigenbasis path, incl. border boxes."""
    rng = np.random.default_rng(size)
    dst = rng.integers(0, 256, (size + 20, size + 10, 3), dtype=np.uint8)
    src = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.ones((size, size), bool)
    for offset in [(10, 5), (0, 0), (20, 10), (0, 10)]:
        out = poisson_blend(dst.astype(np.float32), src.astype(np.float32), mask, offset=offset, gradients="mixed")
        ref = poisson_blend_reference(dst, src, mask, offset=offset, gradients="mixed")
        assert np.abs(out - ref).max() <= 0.02


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_box_solver_matches_sparse_matrix(dtype, monkeypatch):
    """Every transform path (the boxes and sides reach the sine, cosine, mirrored and dense ones, along the
    rows and, for wide boxes, along the columns), and the caller's right-hand side left as it was (the
    solver transforms only its own arrays in place)."""
    rng = np.random.default_rng(0)
    paths = set()
    forward = box_solver._forward

    def recorded(r, left, right, overwrite=False):  # the transform each solve actually ran, and along which axis
        w = r.shape[-1]
        paths.add((box_solver.transform_path(w, left, right), w == rhs.shape[-1]))
        return forward(r, left, right, overwrite)

    monkeypatch.setattr(box_solver, "_forward", recorded)
    # Boxes wide enough for a length pocketfft handles well reach it (box_solver._FFT_COST): 249 (250), 250 (its
    # DCT), 312 (mirrored: 625).  Folded products of odd and even widths: 97 and 106 (both sides alike), 250 and
    # 312 (Dirichlet), 100 along the columns of a wide box.
    for h, w in [(1, 1), (1, 7), (9, 1), (12, 13), (30, 63), (7, 40), (5, 257), (120, 97), (100, 106), (100, 160),
                 (250, 249), (251, 250), (312, 312)]:
        for sides in [(False,) * 4, (True, False, True, False), (False, True, False, True), (True, True, False, True),
                      (False, False, True, True)]:
            rhs = (rng.normal(size=(2, h, w)) * 50).astype(dtype)
            before = rhs.copy()
            u = box_solver.solve_box(rhs, *sides)
            assert np.array_equal(rhs, before)
            A = masked_solver.masked_laplacian_matrix(np.ones((h, w), bool), sides)
            for c in range(2):
                residual = np.abs(A @ u[c].ravel() - rhs[c].ravel()).max()
                # float32 transforms: relative to the right-hand side, and to the solution where a long box with
                # one Dirichlet side is nearly singular (|u| ~ 1e5 at 3 x 249 px)
                assert residual <= 1e-3 * np.abs(rhs).max() + 1e-5 * np.abs(u).max()
    assert {p for p, _ in paths} == {"dst", "dct", "mirrored", "dense", "folded"}
    assert {p for p, along_rows in paths if not along_rows} == {"dense", "folded", "dct"}


@pytest.mark.parametrize("shape", [(3, 4, 97), (3, 97, 4)])
@pytest.mark.parametrize("neumann", [False, True])
def test_volume_box_solve_with_a_folded_axis_matches_sparse_matrix(shape, neumann):
    """A 97-px axis of a volume takes the folded product (its length's prime factors are large for
    pocketfft), as the last axis and moved to the end; both of its sides alike, the other axes mixed."""
    assert box_solver.transform_path(97, neumann, neumann) == "folded"
    rng = np.random.default_rng(97)
    rhs = rng.normal(size=(2,) + shape) * 50
    folded_axis = 1 + shape.index(97)
    sides = tuple((neumann, neumann) if axis == folded_axis else (axis == 1, False) for axis in (1, 2, 3))
    u = box_solver.solve_box_nd(rhs, sides)
    A = masked_solver.masked_laplacian_matrix(np.ones(shape, bool), tuple(v for pair in sides for v in pair))
    for c in range(2):
        assert np.abs(A @ u[c].ravel() - rhs[c].ravel()).max() <= 1e-3 * np.abs(rhs).max()


@pytest.mark.parametrize("n", [1, 2, 3, 8, 97, 130, 257])
def test_eigenbasis_is_the_closed_form_and_its_folded_halves_are_its_entries(n):
    """The looked-up entries (one period of the sine or cosine, closed-form norms) against the closed
    form evaluated entry by entry and normalised numerically; the folded halves are the basis's own
    entries, bit for bit, and the basis is orthonormal."""
    j = np.arange(n)[:, None] + 0.0
    for left, right in [(False, False), (True, True), (True, False), (False, True)]:
        theta = box_solver._frequencies(n, left, right)[None, :]
        if left and right:
            ref = np.cos(theta * (j + 0.5))
        else:
            ref = np.sin(theta * ((n - j) if left else (j + 1)))
        ref /= np.linalg.norm(ref, axis=0, keepdims=True)
        q = box_solver.eigenbasis(n, left, right)
        assert q.dtype == np.float32 and q.shape == (n, n) and not q.flags.writeable
        assert np.abs(q - ref).max() <= 1e-7
        assert np.abs(q.astype(np.float64).T @ q - np.eye(n)).max() <= 1e-6
        if left == right:
            even, odd = box_solver.folded_eigenbasis(n, left)
            assert np.array_equal(even, q[: n - n // 2, 0::2]) and np.array_equal(odd, q[: n // 2, 1::2])


@pytest.mark.parametrize("n", [96, 97, 130, 131])
@pytest.mark.parametrize("neumann", [False, True])
def test_folded_transform_is_the_eigenbasis_product_in_its_mode_order(n, neumann):
    """The fold kernels against NumPy's float32 arithmetic (bit for bit), and the folded transform against the
    full eigenbasis product: the even modes, then the odd ones, with their eigenvalues, and its inverse."""
    from nsa_augment.poisson import kernels

    rng = np.random.default_rng(n)
    x = (rng.normal(size=(7, n)) * 30).astype(np.float32)
    before = x.copy()
    half = n // 2
    _, even, odd = kernels.mirror_fold(x, np.empty((7, n - half), np.float32), np.empty((7, half), np.float32), False)
    assert np.array_equal(x, before)
    assert np.array_equal(even[:, :half], x[:, :half] + x[:, ::-1][:, :half])
    assert np.array_equal(odd, x[:, :half] - x[:, ::-1][:, :half])
    if n % 2:
        assert np.array_equal(even[:, half], x[:, half])
    back = kernels.mirror_fold(np.empty_like(x), even, odd, True)[0]
    assert np.array_equal(back[:, :half], even[:, :half] + odd)
    assert np.array_equal(back[:, ::-1][:, :half], even[:, :half] - odd)
    assert np.array_equal(back[:, half:n - half], even[:, half:])

    spec = box_solver._forward_folded(x, neumann)
    lam = box_solver.folded_eigenvalues(n, neumann)
    order = np.r_[0:n:2, 1:n:2]
    full = x.astype(np.float64) @ box_solver.eigenbasis(n, neumann, neumann).astype(np.float64)
    assert np.abs(spec - full[:, order]).max() <= 1e-5 * np.abs(full).max()
    assert np.array_equal(lam, box_solver.eigenvalues(n, neumann, neumann)[order])
    assert np.abs(box_solver._inverse_folded(spec.copy(), neumann) - x).max() <= 1e-5 * np.abs(x).max()
    # The solver's way: one scratch for both halves, the spectrum written over the rows it was folded from.
    rows, halves = x.copy(), box_solver._halves(*x.shape)
    assert box_solver._forward_folded(rows, neumann, halves, out=rows) is rows
    assert np.array_equal(rows, spec)
    assert np.array_equal(box_solver._inverse_folded(rows, neumann, halves), box_solver._inverse_folded(spec, neumann))


def test_box_solver_rejects_the_singular_all_neumann_problem():
    """Every side on the image border: no Dirichlet boundary, a singular system.

    The tridiagonal kernel divides without a zero test (``error_model="numpy"``), so this check is
    what keeps a zero pivot from becoming a silent inf/nan; the preconditioner's regularised solve
    stays finite.
    """
    rhs = np.random.default_rng(1).normal(size=(2, 6, 9)).astype(np.float32)
    with pytest.raises(ValueError, match="singular"):
        box_solver.solve_box(rhs, True, True, True, True)
    with pytest.raises(ValueError, match="singular"):
        box_solver.solve_box_nd(rhs[:, None], ((True, True),) * 3)
    assert np.isfinite(box_solver.solve_box(rhs, True, True, True, True, regularize=1e-3)).all()


def test_masked_solver_converges_without_fallback_on_compact_shapes():
    yy, xx = np.mgrid[:128, :128]
    inside = ((yy - 64) / 60) ** 2 + ((xx - 64) / 40) ** 2 < 1
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    inside = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    rhs = np.random.default_rng(0).normal(size=(3,) + inside.shape) * inside
    _, iterations = masked_solver.solve_masked(rhs, inside, (False,) * 4)
    assert 0 < iterations < masked_solver.MAX_ITER


def test_uint8_rounds_and_clips():
    dst = np.full((20, 20), 250, np.uint8)
    src = np.zeros((20, 20), np.uint8)
    src[8:12, 8:12] = 255  # a bright bump on a bright background overshoots 255
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = poisson_blend(dst, src, mask)
    ref = poisson_blend_reference(dst, src, mask)[..., 0]
    assert ref.max() > 255
    assert out.max() == 255
    inside = mask & (ref < 255)
    assert np.array_equal(out[inside], np.floor(ref[inside] + 0.5).astype(np.uint8))


def test_float_not_clipped_unless_asked():
    dst = np.full((20, 20, 3), 0.98, np.float32)
    src = np.zeros((20, 20, 3), np.float32)
    src[8:12, 8:12] = 1.0
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    assert poisson_blend(dst, src, mask).max() > 1.0
    clipped = poisson_blend(dst, src, mask, clip=True)
    assert clipped.max() <= 1.0 and clipped.dtype == np.float32


def test_offset_source_equals_cropped_full_source():
    rng = np.random.default_rng(3)
    dst = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    full_src = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    full_mask = np.zeros((40, 50), bool)
    full_mask[10:25, 12:30] = True
    expected = poisson_blend(dst, full_src, full_mask)
    # With a one-pixel margin the patch sees the same source gradients.
    out = poisson_blend(dst, full_src[9:26, 11:31], full_mask[9:26, 11:31], offset=(9, 11))
    assert np.array_equal(out, expected)


def test_two_dimensional_input_keeps_shape():
    dst = np.zeros((16, 16), np.uint8)
    src = np.full((16, 16), 100, np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    out = poisson_blend(dst, src, mask)
    assert out.shape == (16, 16) and out.dtype == np.uint8


# --- properties (hypothesis) ------------------------------------------------------------------


@st.composite
def blend_case(draw):
    h = draw(st.integers(1, 14))
    w = draw(st.integers(2 if h == 1 else 1, 14))
    c = draw(st.sampled_from([1, 2, 3]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["random", "rect", "pixel", "line", "border"]))
    mask = np.zeros((h, w), bool)
    if kind == "random":
        mask = rng.random((h, w)) < draw(st.floats(0.05, 0.95))
    elif kind == "rect":
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        mask[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = True
    elif kind == "pixel":
        mask[rng.integers(0, h), rng.integers(0, w)] = True
    elif kind == "line":
        mask[rng.integers(0, h), :] = True
    else:
        mask[0, :] = True
    if mask.all():
        mask[rng.integers(0, h), rng.integers(0, w)] = False
    if not mask.any():
        mask[rng.integers(0, h), rng.integers(0, w)] = True
    dst = rng.random((h, w, c)).astype(np.float32)
    src = rng.random((h, w, c)).astype(np.float32)
    gradients = draw(st.sampled_from(GRADIENTS))
    factor = draw(st.floats(0.0, 1.0))
    return dst, src, mask, gradients, factor


@settings(max_examples=150, deadline=None)
@given(blend_case())
def test_property_outside_unchanged_and_matches_reference(case):
    dst, src, mask, gradients, factor = case
    dst_before, src_before, mask_before = dst.copy(), src.copy(), mask.copy()
    out = poisson_blend(dst, src, mask, gradients=gradients, factor=factor)
    assert np.array_equal(out[~mask], dst[~mask])
    ref = poisson_blend_reference(dst, src, mask, gradients=gradients, factor=factor)
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    # inputs untouched
    assert np.array_equal(dst, dst_before) and np.array_equal(src, src_before) and np.array_equal(mask, mask_before)


@settings(max_examples=100, deadline=None)
@given(blend_case())
def test_property_source_equal_destination_is_identity(case):
    dst, _, mask, gradients, factor = case
    out = poisson_blend(dst, dst.copy(), mask, gradients=gradients, factor=factor)
    assert np.abs(out - dst).max() < 1e-5


@settings(max_examples=100, deadline=None)
@given(blend_case(), st.floats(-5.0, 5.0))
def test_property_constant_source_offset_does_not_matter(case, shift):
    dst, src, mask, _, _ = case
    a = poisson_blend(dst, src, mask, gradients="normal")
    b = poisson_blend(dst, (src + np.float32(shift)).astype(np.float32), mask, gradients="normal")
    assert np.abs(a - b).max() < 1e-4


@settings(max_examples=100, deadline=None)
@given(blend_case(), st.floats(-3.0, 3.0), st.floats(-3.0, 3.0))
def test_property_linear_in_source_and_destination(case, a, b):
    dst, src, mask, gradients, factor = case
    if gradients == "mixed":
        gradients = "interpolated"  # mixed selection is not linear; normal/interpolated are
    dst2, src2 = dst[::-1].copy(), src[:, ::-1].copy()
    f = lambda d, s: poisson_blend(d, s, mask, gradients=gradients, factor=factor).astype(np.float64)
    combo = f((a * dst + b * dst2).astype(np.float32), (a * src + b * src2).astype(np.float32))
    assert np.abs(combo - (a * f(dst, src) + b * f(dst2, src2))).max() < 1e-3


# --- bad input ---------------------------------------------------------------------------------


def _ok():
    dst = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[3:6, 3:6] = True
    return dst, dst.copy(), mask


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda d, s, m: (d.tolist(), s, m), TypeError, "destination must be a numpy.ndarray"),
        (lambda d, s, m: (d.astype(np.float64), s, m), TypeError, "destination must have dtype uint8, uint16, int16 or float32"),
        (lambda d, s, m: (d, s.astype(np.float32), m), TypeError, "source dtype float32 must match"),
        (lambda d, s, m: (d, s[..., :2], m), ValueError, "source has 2 channels"),
        (lambda d, s, m: (d[..., 0:1][None], s, m), ValueError, "destination must have shape"),
        (lambda d, s, m: (d, s, m[:5]), ValueError, "mask must have shape"),
        (lambda d, s, m: (d, s, np.zeros_like(m)), ValueError, "mask is empty"),
        (lambda d, s, m: (d, s, np.ones_like(m)), ValueError, "covers the whole destination"),
        (lambda d, s, m: (d, s, m.astype(np.float32) * 0.5), ValueError, "only 0 and 1"),
        (lambda d, s, m: (d, s, m.astype(str)), TypeError, "mask must be boolean"),
        (lambda d, s, m: (d[:0], s, m), ValueError, "at least 1x1"),
    ],
)
def test_bad_input_messages(mutate, exc, match):
    d, s, m = mutate(*_ok())
    with pytest.raises(exc, match=match):
        poisson_blend(d, s, m)


def test_nan_and_inf_rejected():
    dst = np.zeros((8, 8), np.float32)
    src = dst.copy()
    src[2, 2] = np.nan
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    with pytest.raises(ValueError, match="source contains NaN"):
        poisson_blend(dst, src, mask)
    dst[0, 0] = np.inf
    with pytest.raises(ValueError, match="destination contains NaN or infinite"):
        poisson_blend(dst, np.zeros_like(dst), mask)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"gradients": "seamless"}, ValueError, "gradients must be one of"),
        ({"factor": 1.5}, ValueError, "factor must be a number in"),
        ({"factor": "a"}, ValueError, "factor must be a number in"),
        ({"offset": (8, 8)}, ValueError, "does not fit inside"),
        ({"offset": (-1, 0)}, ValueError, "does not fit inside"),
        ({"offset": (1.5, 0)}, TypeError, "offset must be a"),
        ({"offset": 3}, TypeError, "offset must be a"),
    ],
)
def test_bad_options(kwargs, exc, match):
    dst = np.zeros((12, 12), np.uint8)
    src = np.zeros((6, 6), np.uint8)
    mask = np.ones((6, 6), bool)
    with pytest.raises(exc, match=match):
        poisson_blend(dst, src, mask, **kwargs)


# --- the OpenCV formulation: what cv2.seamlessClone solves, on the box solver ---------------------------

from nsa_augment.poisson import kernels, seamless_clone  # noqa: E402
from nsa_augment.poisson.opencv import opencv_weights  # noqa: E402
from nsa_augment.poisson.reference import opencv_clone_reference  # noqa: E402


def _photos(size=384, patch=160):
    import cv2
    from skimage import data

    dst = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    src = cv2.resize(data.coffee(), (patch + 40, patch + 40), interpolation=cv2.INTER_AREA)[20:-20, 20:-20].copy()
    return dst, src


def _mask_zoo(n):
    import cv2
    from skimage import data

    yy, xx = np.mgrid[:n, :n]
    c = (n - 1) / 2
    ellipse = ((yy - c) / (0.45 * n)) ** 2 + ((xx - c) / (0.35 * n)) ** 2 < 1
    disc = ((yy - c) / (0.45 * n)) ** 2 + ((xx - c) / (0.45 * n)) ** 2 < 1
    hole = ((yy - c) / (0.2 * n)) ** 2 + ((xx - c) / (0.2 * n)) ** 2 < 1
    gray = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2GRAY), (n, n), interpolation=cv2.INTER_AREA)
    return {"rectangle": np.ones((n, n), bool), "ellipse": ellipse, "ring": disc & ~hole, "object": gray > 120}


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("shape", ["rectangle", "ellipse", "ring", "object"])
def test_opencv_kernel_matches_the_numpy_transcription(shape, mixed):
    rng = np.random.default_rng(3)
    dst = rng.integers(0, 256, (70, 80, 3)).astype(np.uint8)
    src = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    mask = _mask_zoo(48)[shape][:40]
    factor = 0.6 if not mixed else 1.0
    weights, rect = opencv_weights(mask, factor)
    oy, ox = 12, 20
    rhs = kernels.assemble_rhs_opencv(dst, src, weights, oy, ox, oy + rect[0], oy + rect[1], ox + rect[2], ox + rect[3], mixed)
    from nsa_augment.poisson.box_solver import solve_box

    ours = solve_box(rhs, False, False, False, False)
    ref = opencv_clone_reference(dst, src, mask, offset=(oy, ox), mixed=mixed, factor=factor)
    y0, x0 = oy + rect[0] + 1, ox + rect[2] + 1
    inner = ref[y0 : y0 + ours.shape[1], x0 : x0 + ours.shape[2]].transpose(2, 0, 1)
    assert np.abs(ours - inner).max() < 0.01


def _rhs_opencv_numpy(dst, src, weights, oy, ox, y0, y1, x0, x1, mixed):
    """``assemble_rhs_opencv`` from its definition, whole-array NumPy in float64."""
    d, s = dst.astype(np.float64), src.astype(np.float64)
    ys, xs = np.arange(y0, y1 - 1), np.arange(x0, x1 - 1)  # pixels with both forward edges in the rectangle
    dx = d[ys][:, xs + 1] - d[ys][:, xs]
    dy = d[ys + 1][:, xs] - d[ys][:, xs]
    sy, sx = (ys - oy)[:, None], (xs - ox)[None, :]
    has_source = (sy >= 0) & (sy < weights.shape[0]) & (sx >= 0) & (sx < weights.shape[1])
    m = np.where(has_source, weights[np.clip(sy, 0, weights.shape[0] - 1), np.clip(sx, 0, weights.shape[1] - 1)], 0.0)
    vx, vy = dx.copy(), dy.copy()
    for i, j in zip(*np.nonzero(m > 0)):
        a, b = sy[i, 0], sx[0, j]
        gx, gy = s[a, b + 1] - s[a, b], s[a + 1, b] - s[a, b]
        use = np.abs(gx - gy) > np.abs(dx[i, j] - dy[i, j]) if mixed else np.ones(len(gx), bool)
        vx[i, j] = np.where(use, m[i, j] * gx + (1 - m[i, j]) * dx[i, j], dx[i, j])
        vy[i, j] = np.where(use, m[i, j] * gy + (1 - m[i, j]) * dy[i, j], dy[i, j])
    rhs = vx[1:, :-1] - vx[1:, 1:] + vy[:-1, 1:] - vy[1:, 1:]  # interior pixels (1 .. bh - 2, 1 .. bw - 2)
    rhs[0] += d[y0, x0 + 1 : x1 - 1]
    rhs[-1] += d[y1 - 1, x0 + 1 : x1 - 1]
    rhs[:, 0] += d[y0 + 1 : y1 - 1, x0]
    rhs[:, -1] += d[y0 + 1 : y1 - 1, x1 - 1]
    return rhs.transpose(2, 0, 1)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
       st.sampled_from([1, 3, 4]), st.booleans())
def test_opencv_right_hand_side_matches_its_definition_wherever_the_source_lies(seed, dtype, channels, mixed):
    """The source anywhere against the rectangle: inside, across any side, beside it, above or below it."""
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(6, 40, 2))
    h, w = (int(v) for v in rng.integers(5, 30, 2))
    dst = (rng.random((H, W, channels)) * 200).astype(dtype)
    src = (rng.random((h, w, channels)) * 200).astype(dtype)
    weights, _ = opencv_weights(rng.random((h, w)) < 0.9, float(rng.choice([1.0, 0.6])))
    y0, x0 = int(rng.integers(0, H - 3)), int(rng.integers(0, W - 3))
    y1, x1 = int(rng.integers(y0 + 3, H + 1)), int(rng.integers(x0 + 3, W + 1))
    oy, ox = int(rng.integers(-h - 2, H + 2)), int(rng.integers(-w - 2, W + 2))
    got = kernels.assemble_rhs_opencv(dst, src, weights, oy, ox, y0, y1, x0, x1, mixed)
    assert got.dtype == np.float32 and got.shape == (channels, y1 - y0 - 2, x1 - x0 - 2)
    want = _rhs_opencv_numpy(dst, src, weights, oy, ox, y0, y1, x0, x1, mixed)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("mode", ["normal", "mixed"])
@pytest.mark.parametrize("shape", ["rectangle", "ellipse", "ring", "object"])
def test_seamless_clone_matches_cv2_within_one_level(shape, mode):
    import cv2

    dst, src = _photos()
    mask = _mask_zoo(src.shape[0])[shape].astype(np.uint8) * 255
    flag = cv2.NORMAL_CLONE if mode == "normal" else cv2.MIXED_CLONE
    for center in ((192, 192), (121, 250)):
        before = mask.copy()
        ours = seamless_clone(src, dst, mask, center, mode)
        assert np.array_equal(mask, before)  # OpenCV's own seamlessClone erodes and inverts the caller's mask in place
        ref = cv2.seamlessClone(src, dst, mask.copy(), center, flag)
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02
        assert (ours != dst).any()


def test_poisson_blend_opencv_formulation_is_seamless_clone_at_an_offset():
    dst, src = _photos(256, 100)
    mask = _mask_zoo(100)["ellipse"]
    weights, (r0, r1, c0, c1) = opencv_weights(mask)
    center = (120, 130)  # (x, y)
    oy, ox = center[1] - (r1 - r0) // 2 - r0, center[0] - (c1 - c0) // 2 - c0
    a = poisson_blend(dst, src, mask, offset=(oy, ox), formulation="opencv")
    b = seamless_clone(src, dst, mask, center)
    assert np.array_equal(a, b)
    f = poisson_blend(dst.astype(np.float32) / 255, src.astype(np.float32) / 255, mask, offset=(oy, ox),
                      formulation="opencv", clip=True)
    assert f.dtype == np.float32 and np.abs(f * 255 - a).max() <= 1.0 + 1e-3  # truncation only for integers


def test_seamless_clone_errors():
    dst, src = _photos(128, 60)
    with pytest.raises(ValueError, match="no pixel to solve"):
        seamless_clone(src, dst, np.pad(np.ones((60, 2), bool), ((0, 0), (29, 29))), (64, 64))
    with pytest.raises(ValueError, match="does not fit"):
        seamless_clone(src, dst, np.ones((60, 60), bool), (10, 64))
    with pytest.raises(ValueError, match="mode"):
        seamless_clone(src, dst, np.ones((60, 60), bool), (64, 64), "mix")
    with pytest.raises(TypeError, match="center"):
        seamless_clone(src, dst, np.ones((60, 60), bool), (64.5, 64))
    with pytest.raises(ValueError, match="formulation"):
        poisson_blend(dst, src, np.ones((60, 60), bool), offset=(10, 10), formulation="cv2")


def test_overflowing_float_input_is_an_error_not_nans(recwarn):
    dst = np.full((32, 32), 3e38, np.float32)
    src = np.full((16, 16), -3e38, np.float32)
    src[4:8] = 3e38
    with pytest.raises(ValueError, match="overflowed"):
        poisson_blend(dst, src, np.ones((16, 16), bool), offset=(8, 8))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# --- threads: the same numbers with 1 or many BLAS/Numba threads, and the caller's setting restored ------

_THREADS_RUN = """
import hashlib, numpy as np, nsa_augment
from threadpoolctl import threadpool_info
before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
rng = np.random.default_rng(0)
h = hashlib.sha256()
for i in range(12):
    size = (90 + 7 * i, 120 - 3 * i, 3)
    d = rng.integers(0, 256, size, dtype=np.uint8)
    for preset in ("mvtec/carpet", "mvtec/hazelnut", "mvtec/cable"):
        image, label, _ = nsa_augment.synthesize(d, d[::-1].copy(), preset, rng)
        h.update(image.tobytes()); h.update(label.tobytes())
mask = np.zeros((60, 60), bool); mask[5:50, 8:55] = True; mask[20:30, 20:30] = False
h.update(nsa_augment.poisson_blend(d[:70, :70], d[:60, :60], mask, offset=(3, 4), gradients="mixed").tobytes())
big = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
yy, xx = np.mgrid[:300, :280]
blob = np.sin(yy / 11.0) * np.cos(xx / 13.0) > -0.2  # several multigrid levels, irregular
h.update(nsa_augment.poisson_blend(big, big[::-1].copy(), blob).tobytes())
box = np.zeros((300, 280), bool); box[40:190, 30:230] = True  # a 200 px wide box: the folded products
h.update(nsa_augment.poisson_blend(big, big[::-1].copy(), box).tobytes())
after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
assert before == after, (before, after)
print(h.hexdigest(), before)
"""


def test_eigenbasis_cache_keeps_to_its_byte_budget_and_evicts_the_least_recently_used():
    """The box solver's bases are cached by bytes, not entries (a wide basis is 1 MB): under the budget
    the least recently used go first, a basis wider than the whole budget is still returned (and kept
    alone), and a hit returns the cached, read-only array."""
    from nsa_augment.poisson.box_solver import _BasisCache, _eigenbasis

    cache = _BasisCache(4 * (101**2 + 102**2 + 103**2))  # room for three of the four bases below
    first = cache.get((100, False, False), _eigenbasis)
    assert cache.get((100, False, False), _eigenbasis) is first and not first.flags.writeable
    for n in (101, 102):
        cache.get((n, False, False), _eigenbasis)
    cache.get((100, False, False), _eigenbasis)  # 100 is now the most recent: 101 goes next
    cache.get((103, False, False), _eigenbasis)
    assert list(cache._items) == [(102, False, False), (100, False, False), (103, False, False)]
    assert cache.nbytes <= cache.budget and cache.misses == 4
    wide = cache.get((400, True, False), _eigenbasis)
    assert list(cache._items) == [(400, True, False)] and cache.nbytes == wide.nbytes > cache.budget
    assert np.allclose(wide.T @ wide, np.eye(400), atol=1e-5)


def test_results_do_not_depend_on_blas_or_numba_threads():
    import os
    import subprocess
    import sys

    digests = set()
    for env in ({"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
                {"OPENBLAS_NUM_THREADS": "4", "NUMBA_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}, {}):
        full = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                                   "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        proc = subprocess.run([sys.executable, "-c", _THREADS_RUN], env={**full, **env}, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.add(proc.stdout.split()[0])
    assert len(digests) == 1


def test_the_blas_limit_is_numpys_own_library_or_every_one(tmp_path):
    """A BLAS library in NumPy's folders (``numpy/``, ``numpy.libs/``: pip's wheels) is the one limited;
    none there (NumPy built against a system or conda BLAS): every one."""
    from pathlib import Path
    from types import SimpleNamespace

    import numpy

    from nsa_augment.poisson.blas import numpys_blas

    package = Path(numpy.__file__).resolve().parent
    ours = SimpleNamespace(filepath=str(package.with_name("numpy.libs") / "libscipy_openblas64_-1.so"))
    inside = SimpleNamespace(filepath=str(package / ".dylibs" / "libopenblas.dylib"))
    scipys = SimpleNamespace(filepath=str(package.with_name("scipy.libs") / "libscipy_openblas-2.so"))
    lookalike = SimpleNamespace(filepath=str(tmp_path / "numpy.libs" / "libopenblas.so"))  # another numpy.libs
    system = SimpleNamespace(filepath="/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
    assert numpys_blas([scipys, ours, system]) == [ours]
    assert numpys_blas([inside, scipys]) == [inside]
    assert numpys_blas([scipys, lookalike, system]) == [scipys, lookalike, system]
    assert numpys_blas([]) == []


def test_blas_limit_is_scoped_and_survives_concurrent_solves():
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info, threadpool_limits

    from nsa_augment import synthesize
    from nsa_augment.poisson.blas import _blas_controllers, single_threaded_blas

    numpy_libs = {lib.filepath for lib in _blas_controllers()}  # NumPy's (pip's wheels), else all

    def pools():
        return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = pools()
        # Inside the scope NumPy's BLAS runs on one thread, and only it: the others keep the caller's setting.
        limited = [(path, 1 if path in numpy_libs else n) for path, n in before]
        with single_threaded_blas():
            assert pools() == limited
            with single_threaded_blas():
                assert pools() == limited
            assert pools() == limited
        assert pools() == before

        def work(seed):
            rng = np.random.default_rng(seed)
            d = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            return [synthesize(d, d[::-1].copy(), "mvtec/carpet", rng)[1].sum() for _ in range(8)]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(8)))
        assert pools() == before  # the last solve to finish restored the caller's setting
    assert results == [work(seed) for seed in range(8)]


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("where", ["inside", "corner", "bottom-right", "whole-width"])
def test_rectangle_kernel_equals_the_general_kernel(mode, where):
    rng = np.random.default_rng(mode)
    H, W, C = 40, 50, 3
    dst = rng.integers(0, 256, (H, W, C)).astype(np.uint8)
    y0, y1, x0, x1 = {"inside": (8, 30, 10, 41), "corner": (0, 12, 0, 9), "bottom-right": (25, 40, 33, 50),
                      "whole-width": (5, 20, 0, 50)}[where]
    # a source covering the box plus a margin where the image allows (as NSA's blend passes it)
    oy, ox = max(y0 - 1, 0), max(x0 - 1, 0)
    src = rng.integers(0, 256, (min(y1 + 1, H) - oy, min(x1 + 1, W) - ox, C)).astype(np.uint8)
    mask = np.zeros(src.shape[:2], bool)
    mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox] = True
    general, inside = kernels.assemble_rhs(dst, src, mask, oy, ox, y0, y1, x0, x1, mode, 0.3)
    box = kernels.assemble_rhs_box(dst, src, dst.reshape(H, -1), src.reshape(src.shape[0], -1), oy, ox, y0, y1, x0, x1,
                                   mode, 0.3, np.empty((C, y1 - y0, x1 - x0)), np.empty((x1 - x0) * C))
    assert inside.all() and np.allclose(general, box, rtol=0, atol=1e-9)  # same sums, another order


def _rhs_box_numpy(dst, src, oy, ox, y0, y1, x0, x1, mode, factor):
    """``assemble_rhs_box`` from its definition, whole-array NumPy in float64 (C, bh, bw)."""
    d = dst.astype(np.float64)
    H, W = d.shape[:2]
    s = np.zeros_like(d)  # the source in destination coordinates, where it exists
    has = np.zeros((H, W), bool)
    s[oy : oy + src.shape[0], ox : ox + src.shape[1]] = src
    has[oy : oy + src.shape[0], ox : ox + src.shape[1]] = True
    ys, xs = np.mgrid[y0:y1, x0:x1]
    rhs = np.zeros(ys.shape + (d.shape[2],))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # the kernel's order: north, south, west, east
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        qy, qx = qy.clip(0, H - 1), qx.clip(0, W - 1)
        gd, gs = d[ys, xs] - d[qy, qx], s[ys, xs] - s[qy, qx]
        v = {0: gs, 1: np.where(np.abs(gs) > np.abs(gd), gs, gd), 2: factor * gs + (1 - factor) * gd}[mode]
        v = np.where(has[qy, qx][..., None], v, gd)
        outside = (qy < y0) | (qy >= y1) | (qx < x0) | (qx >= x1)
        rhs += np.where(ok[..., None], v + np.where(outside[..., None], d[qy, qx], 0.0), 0.0)
    return rhs.transpose(2, 0, 1)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
       st.sampled_from([1, 3, 4]), st.sampled_from([0, 1, 2]), st.sampled_from([np.float64, np.float32]))
def test_rectangle_right_hand_side_matches_its_definition(seed, dtype, channels, mode, out_dtype):
    """Any rectangle (one pixel wide or tall, at any image border) and a source covering it with any margin.

    Into float64, and into float32 with a float32 row scratch, as the blend calls it: integer
    images' sums are exact either way (float32 arithmetic inside), float32 images' are rounded once.
    """
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(2, 30, 2))
    y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
    y1, x1 = int(rng.integers(y0 + 1, H + 1)), int(rng.integers(x0 + 1, W + 1))
    if (y1 - y0) * (x1 - x0) == H * W:
        y1 -= 1 if y1 - y0 > 1 else 0
        x1 -= 1 if (y1 - y0) * (x1 - x0) == H * W else 0
    oy, ox = int(rng.integers(0, y0 + 1)), int(rng.integers(0, x0 + 1))
    h, w = int(rng.integers(y1 - oy, H - oy + 1)), int(rng.integers(x1 - ox, W - ox + 1))
    low, peak = {np.uint16: (0, 65535), np.int16: (-32768, 65535)}.get(dtype, (0, 250))  # 16 bits: their full range
    dst = (low + rng.random((H, W, channels)) * peak).astype(dtype)
    src = (low + rng.random((h, w, channels)) * peak).astype(dtype)
    got = kernels.assemble_rhs_box(dst, src, dst.reshape(H, -1), src.reshape(h, -1), oy, ox, y0, y1, x0, x1, mode, 0.3,
                                   np.empty((channels, y1 - y0, x1 - x0), out_dtype),
                                   np.empty((x1 - x0) * channels, out_dtype))
    want = _rhs_box_numpy(dst, src, oy, ox, y0, y1, x0, x1, mode, 0.3)
    if out_dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * peak)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    if mode != 2 and dtype != np.float32:  # integer sums and differences: exact in either type
        assert np.array_equal(got, want.astype(out_dtype))


def test_sixteen_bit_scans_are_solved_to_sixteen_bit_precision():
    """uint16 images, and float images holding a 16-bit scan (raw or scaled to [0, 1]), on a masked solve.

    The iterative solve stops on an estimated error in grey levels; for floats a level is the
    region's peak / 65535, so a scan scaled to [0, 1] keeps its 16-bit precision (peak / 255 would
    leave ~0.8 16-bit levels of error).
    """
    rng = np.random.default_rng(16)
    yy, xx = np.mgrid[:120, :150]
    mask = ((yy - 60) / 55) ** 2 + ((xx - 75) / 70) ** 2 < 1
    base = (30000 + 20000 * np.sin(yy / 17) * np.cos(xx / 23))[..., None]
    dst = (base + rng.normal(0, 300, (120, 150, 1))).clip(0, 65535).astype(np.uint16)
    src = (65535 - base + rng.normal(0, 300, (120, 150, 1))).clip(0, 65535).astype(np.uint16)
    ref = poisson_blend_reference(dst, src, mask)
    out16 = poisson_blend(dst, src, mask).astype(np.float64)
    inside = mask[..., None] & (ref > 0) & (ref < 65535)
    assert (np.abs(out16 - ref)[inside] <= 0.5 + 0.01).all()
    raw = poisson_blend(dst.astype(np.float32), src.astype(np.float32), mask)
    assert np.abs(raw - ref).max() <= 0.01
    unit = poisson_blend(dst.astype(np.float32) / 65535, src.astype(np.float32) / 65535, mask)
    assert np.abs(unit.astype(np.float64) * 65535 - ref).max() <= 0.02  # float32 itself resolves 0.004 here


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.zeros((8, 8)).tolist(), np.zeros((4, 4)), np.ones((4, 4), bool)), {}, TypeError, "destination must be a numpy"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.ones((3, 4), bool)), {}, ValueError, r"mask must be an array of the source's shape \(4, 4\)"),
        ((np.zeros((8, 8, 3)), np.zeros((4, 4)), np.ones((4, 4), bool)), {}, ValueError, "source has 1 channel but destination has 3: give both the same channels"),
        ((np.zeros((8, 8)), np.full((4, 4), np.nan), np.ones((4, 4), bool)), {}, ValueError, "source contains NaN"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.ones((4, 4), bool)), {"offset": (6, 0)}, ValueError, "does not fit"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.ones((4, 4), bool)), {"offset": (1.5, 0)}, TypeError, "offset must be 2 integers"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.zeros((4, 4), bool)), {}, ValueError, "mask is empty"),
        ((np.zeros((4, 4)), np.zeros((4, 4)), np.ones((4, 4), bool)), {}, ValueError, "covers the whole destination"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.ones((4, 4), bool)), {"gradients": "max"}, ValueError, "gradients must be"),
        ((np.zeros((8, 8)), np.zeros((4, 4)), np.ones((4, 4), bool)), {"factor": 2.0}, ValueError, r"factor must be a number in \[0, 1\]"),
    ],
)
def test_the_reference_solve_names_bad_arguments(args, kwargs, exc, match):
    """The sparse reference is public too: it takes any real dtype (float64 for an oracle), nothing malformed."""
    with pytest.raises(exc, match=match):
        poisson_blend_reference(*args, **kwargs)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("rounding", [0, 1])
def test_write_box_equals_write_solution_with_a_full_mask(dtype, rounding):
    """The rectangle writer (no mask) writes what the masked one writes for a full mask: halves, values out of
    range and negative ones, both rounding modes rectangle blends use."""
    rng = np.random.default_rng(rounding)
    solution = (rng.normal(size=(3, 7, 9)) * 300).astype(np.float32)
    solution[0, 0, :4] = [0.5, 1.5, -0.5, 254.5]
    info = np.iinfo(dtype) if dtype != np.float32 else None
    lo, hi = (float(info.min), float(info.max)) if info else (0.0, 1.0)
    expected = np.zeros((12, 14, 3), dtype)
    got = expected.copy()
    kernels.write_solution(expected, solution, np.ones((7, 9), bool), 2, 3, lo, hi, rounding)
    kernels.write_box(got, solution, 2, 3, lo, hi, rounding)
    assert np.array_equal(got, expected) and expected.any()
