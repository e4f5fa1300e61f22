"""NSA synthesis: statistical fidelity to the paper's formulas, object rules, labels, seeds, bad input."""

import hashlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from skimage.morphology import disk

from conftest import levels_as
from nsa_augment import NSAConfig, object_mask, presets, synthesize
from nsa_augment.methods.nsa.labels import median_keeps
from nsa_augment.methods.nsa.sampling import (
    pixel_bounds,
    rescaled_size,
    sample_half_width,
    sample_num_patches,
    sample_rescale,
)

# --- statistical fidelity: our sampler vs a direct NumPy transcription of the paper's formulas -------


def _transcribed_half_widths(rng, n, dim, bounds, gamma):
    shape, scale, lower = gamma
    lo, hi = np.round(bounds[0] * dim), np.round(bounds[1] * dim)
    return np.clip(((lower + rng.gamma(shape, scale, size=n)) * dim).astype(int), lo, hi)


@pytest.mark.parametrize("dim, bounds", [(256, (0.03, 0.4)), (512, (0.03, 0.15)), (100, (0.05, 0.4))])
def test_half_width_distribution_matches_formula(dim, bounds):
    gamma = (2.0, 0.05, 0.03)
    rng = np.random.default_rng(1)
    ours = np.array([sample_half_width(rng, dim, bounds, gamma) for _ in range(4000)])
    theirs = _transcribed_half_widths(np.random.default_rng(2), 4000, dim, bounds, gamma)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    lo, hi = pixel_bounds(dim, bounds)
    assert ours.min() >= lo and ours.max() <= hi
    # clipping, not rejection: the bounds carry probability mass
    assert np.mean(ours == lo) == pytest.approx(np.mean(theirs == lo), abs=0.03)


def test_half_width_uniform_without_gamma():
    rng = np.random.default_rng(0)
    draws = np.array([sample_half_width(rng, 200, (0.05, 0.2), None) for _ in range(4000)])
    assert draws.min() == 10 and draws.max() == 40
    assert stats.chisquare(np.bincount(draws - 10)).pvalue > 1e-3


def test_number_of_patches_is_one_plus_binomial():
    rng = np.random.default_rng(0)
    counts = np.bincount([sample_num_patches(rng, 4) for _ in range(4000)], minlength=5)[1:]
    expected = 4000 * stats.binom.pmf(np.arange(4), 3, 0.5)
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_number_of_patches_draws_what_one_array_of_coin_flips_draws(bit_generator):
    """The scalar draws give ``1 + rng.integers(0, 2, size=n - 1).sum()`` and leave the generator where it
    leaves it, after an odd or even number of earlier 32-bit draws (one buffered half-word or none)."""
    for seed in range(200):
        for earlier in (0, 1):
            for n in (1, 2, 3, 4, 6):
                ours, theirs = (np.random.Generator(bit_generator(seed)) for _ in range(2))
                ours.integers(0, 7, size=earlier), theirs.integers(0, 7, size=earlier)
                assert sample_num_patches(ours, n) == 1 + int(theirs.integers(0, 2, size=n - 1).sum())
                assert ours.integers(0, 1 << 20) == theirs.integers(0, 1 << 20)


def test_rescale_factor_distribution():
    rng = np.random.default_rng(0)
    ours = np.array([sample_rescale(rng, (0.5, 2.0)) for _ in range(4000)])
    theirs = np.clip(np.random.default_rng(9).normal(1, 0.5, 4000), 0.5, 2.0)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert ours.min() == 0.5 and ours.max() <= 2.0


def test_end_to_end_patch_statistics(tiles128):
    """Patch counts and rescale factors seen through synthesize() follow the formulas too."""
    cfg = presets.get("mvtec/carpet")
    rng = np.random.default_rng(0)
    attempted, scales = [], []
    for i in range(600):
        _, _, info = synthesize(tiles128[i % 4], tiles128[(i + 1) % 4], cfg, rng)
        attempted.append(info.num_attempted)
        scales += [p.scale for p in info.patches]
        assert len(info.patches) + len(info.skipped) == info.num_attempted
    counts = np.bincount(attempted, minlength=5)[1:]
    assert stats.chisquare(counts, 600 * stats.binom.pmf(np.arange(4), 3, 0.5)).pvalue > 1e-3
    theirs = np.clip(np.random.default_rng(1).normal(1, 0.5, 5000), 0.5, 2.0)
    assert stats.ks_2samp(scales, theirs).pvalue > 1e-3


def test_rescaled_size_clipping_modes():
    full = NSAConfig(width_bounds=((0.03, 0.4), (0.03, 0.4)), rescale_bounds=(0.5, 2.0))
    ref = full.replace(rescale_clip="reference")
    # a 100x60 patch doubled in a 256 image: full size bounded by 2 * 102 px, reference by 102 px
    assert rescaled_size((100, 60), 2.0, (256, 256), full) == (200, 120)
    h, w = rescaled_size((100, 60), 2.0, (256, 256), ref)
    assert h <= 102 and w <= 102 and abs(h / w - 100 / 60) < 0.05
    assert rescaled_size((40, 40), 0.5, (256, 256), full) == (20, 20)


# --- object masks ---------------------------------------------------------------------------------


def test_object_rules_are_honoured(object_scene):
    from nsa_augment.methods.nsa.blending import extract_mask

    dst, src = object_scene
    cfg = presets.get("mvtec/bottle")  # (200, 60) background, min_object 0.7, min_overlap 0.25
    dst_obj, src_obj = object_mask(dst, cfg.object_masks), object_mask(src, cfg.object_masks)
    rng = np.random.default_rng(0)
    placed = 0
    for _ in range(150):
        image, label, info = synthesize(dst, src, cfg, rng)
        allowed = np.zeros(dst.shape[:2], bool)
        for p in info.patches:
            y0, y1, x0, x1 = p.src_box
            assert src_obj[y0:y1, x0:x1].mean() > cfg.min_object
            src_patch_obj = extract_mask(src_obj, p.src_box, p.dst_size)
            assert src_patch_obj.mean() > cfg.min_object
            dy0, dy1, dx0, dx1 = p.dst_box
            allowed[dy0:dy1, dx0:dx1] |= src_patch_obj | dst_obj[dy0:dy1, dx0:dx1]
            placed += 1
        # labels only where the source patch or the destination has object (plus the 5x5 median's reach)
        assert not label[~ndi.maximum_filter(allowed, size=5)].any()
    assert placed > 50


@pytest.mark.parametrize("dims", [2, 3])
def test_extract_mask_is_its_definition(dims):
    """Nearest-neighbour resize of a box of a mask: output pixel i takes box pixel floor((i + 1/2) box / size)."""
    from nsa_augment.methods.nsa.blending import extract_mask

    rng = np.random.default_rng(dims)
    mask = rng.random((9, 23, 31)[-dims:]) > 0.5
    for _ in range(40):
        box = tuple(v for n in mask.shape for v in np.sort(rng.choice(n + 1, 2, replace=False)))
        size = tuple(int(rng.integers(1, 2 * n + 3)) for n in mask.shape)
        got = extract_mask(mask, box, size)
        expected = np.empty(size, bool)
        for i in np.ndindex(*size):
            expected[i] = mask[tuple(box[2 * a] + int((i[a] + 0.5) * (box[2 * a + 1] - box[2 * a]) // size[a])
                                     for a in range(dims))]
        assert got.shape == size and np.array_equal(got, expected)


def test_destination_overlap_rule(object_scene):
    dst, src = object_scene
    cfg = presets.get("mvtec/bottle").replace(rescale=False)  # patch == cut box: easy to recheck
    dst_obj, src_obj = object_mask(dst, cfg.object_masks), object_mask(src, cfg.object_masks)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(100):
        _, _, info = synthesize(dst, src, cfg, rng)
        for p in info.patches:
            sy0, sy1, sx0, sx1 = p.src_box
            dy0, dy1, dx0, dx1 = p.dst_box
            s = src_obj[sy0:sy1, sx0:sx1]
            assert (dst_obj[dy0:dy1, dx0:dx1] & s).sum() / s.sum() > cfg.min_overlap
            checked += 1
    assert checked > 20


def test_no_object_no_patch():
    """A plain background image has no object: every patch is skipped, with a reason."""
    blank = np.full((64, 64, 3), 240, np.uint8)
    image, label, info = synthesize(blank, blank.copy(), "mvtec/bottle", np.random.default_rng(0))
    assert not info.patches and info.skipped and "object" in info.skipped[0]
    assert np.array_equal(image, blank) and not label.any()


# --- labels ---------------------------------------------------------------------------------------


def _reference_label(before, after, region, mode, tol, factor, k, x0):
    """Whole-image label straight from the paper's definition (cv2/scipy, no cropping)."""
    diff = np.abs(before.astype(np.float64) - after.astype(np.float64)).mean(axis=2)
    changed = cv2.medianBlur(((diff > tol) & region).astype(np.uint8), 5).astype(np.float64)
    if mode == "binary":
        return changed
    if mode == "continuous":
        return changed * factor
    intensity = ndi.median_filter(diff * changed, footprint=disk(5), mode="nearest")
    if mode == "intensity":
        return intensity
    return changed / (1 + np.exp(-k * (intensity - x0)))


@pytest.mark.parametrize("mode", ["binary", "continuous", "intensity", "logistic"])
def test_label_equals_whole_image_definition(tiles128, mode):
    from nsa_augment.methods.nsa.labels import make_label

    cfg = presets.get("mvtec/wood").replace(label=mode)
    rng = np.random.default_rng(5)
    for i in range(12):
        dst, src = tiles128[i % 4], tiles128[(i + 2) % 4]
        image, label, info = synthesize(dst, src, cfg, rng)
        region = np.zeros(dst.shape[:2], bool)
        for p in info.patches:
            y0, y1, x0, x1 = p.dst_box
            region[y0:y1, x0:x1] = True
        expected = _reference_label(dst, image, region, mode, cfg.tol, info.factor, *cfg.logistic)
        assert np.allclose(label, expected, atol=1e-6), (i, np.abs(label - expected).max())
        assert np.array_equal(make_label(dst, image, region, mode, tol=cfg.tol, factor=info.factor, logistic=cfg.logistic), label)


@pytest.mark.parametrize("mode", ["binary", "continuous", "intensity", "logistic"])
@pytest.mark.parametrize("dims", [2, 3])
def test_label_by_groups_of_patch_boxes_equals_one_common_box(mode, dims):
    """Synthesis labels each group of nearby patch boxes on its own box: the same label as on the region's
    common bounding box (the whole-image definition), for boxes that merge (close) and that do not (just
    far enough apart), at the image border, and regions that fill only part of their boxes (object masks)."""
    from nsa_augment.methods.nsa.labels import _GROW, _groups, _label

    rng = np.random.default_rng(dims)
    n = 96 if dims == 2 else 56
    shape = (n,) * dims
    before = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    for gap in range(0, 3 * _GROW + 3):  # from touching to past the separation at which boxes stop merging
        after = before.copy()
        region = np.zeros(shape, bool)
        first = tuple([0] * (dims - 1) + [2])  # at the border along the first axes
        size = tuple([12] * dims)
        second = tuple([5] * (dims - 1) + [2 + 12 + gap])
        boxes = []
        for corner in (first, second):
            inner = tuple(slice(c, c + m) for c, m in zip(corner, size))
            after[inner] = np.clip(after[inner].astype(int) + rng.integers(-60, 60, size + (3,)), 0, 255)
            region[inner] = rng.random(size) < 0.9  # part of the box, as with object masks
            boxes.append(tuple(v for c, m in zip(corner, size) for v in (c, c + m)))
        kw = dict(tol=1.0, factor=0.5, logistic=(1 / 6, 20.0), intensity=(0.0, 255.0))
        got = _label(before, after, region, mode, boxes=boxes, **kw)
        assert np.array_equal(got, _label(before, after, region, mode, **kw)), gap
        assert len(_groups(boxes, shape, _GROW)) == (1 if gap < 3 * _GROW else 2)
        assert got.any()


@pytest.mark.parametrize("dtype, channels", [(np.uint16, 3), (np.float32, 1), (np.uint8, 1), (np.uint8, 3),
                                             (np.float32, 70)])
def test_label_bins_and_saturation_equal_their_definition(tiles128, dtype, channels):
    """Inputs other than uint8 read as 0..255 are binned to 1 / (4 C) of a level, and a change larger than
    the intensity window counts as 255 levels: the intensity and logistic labels against that definition.
    70 channels need more bins than uint16 holds (the median then reads int64 bins)."""
    from nsa_augment.methods.nsa.labels import bin_dtype, make_label

    if channels > 3:
        tiles128 = [np.concatenate([t] * (channels // 3 + 1), axis=-1) for t in tiles128]
        assert bin_dtype(255 * 4 * channels) == np.int64

    scale = {np.uint8: 1.0, np.uint16: 257.0, np.float32: 1 / 255}[dtype]
    lo, hi = 40 * scale, 200 * scale  # a window narrower than the values: large changes saturate
    before = (tiles128[0][..., :channels].astype(np.float64) * scale).astype(dtype)
    after = before.copy()
    bright = (np.minimum(tiles128[1][..., :channels].astype(np.float64) + 150, 255) * scale).astype(dtype)
    after[30:80, 20:90] = bright[30:80, 20:90]
    after[85:100, 60:110] = before[85:100, 60:110] // 2 if dtype != np.float32 else before[85:100, 60:110] / 2
    region = np.zeros(before.shape[:2], bool)
    region[28:82, 18:92] = region[85:100, 60:110] = True

    exact = dtype == np.uint8 and (lo, hi) == (0.0, 255.0)
    quant = channels * (1 if exact else 4)
    diff = np.abs(before.astype(np.float64) - after.astype(np.float64)).mean(axis=2) * 255.0 / (hi - lo)
    changed = cv2.medianBlur(((diff > 1.0) & region).astype(np.uint8), 5)
    bins = np.where(changed > 0, np.minimum(np.rint(diff * quant), 255 * quant), 0)
    assert (changed.astype(bool) & (diff * quant > 255 * quant)).any()  # some pixels saturate
    intensity = ndi.median_filter(bins, footprint=disk(5), mode="nearest") / quant
    k, x0 = 1 / 12, 24.0
    logistic = np.minimum((changed / (1 + np.exp(-k * (intensity - x0)))).astype(np.float32),
                          np.float32(1) - np.float32(2**-24))
    got = make_label(before, after, region, "intensity", intensity=(lo, hi))
    assert np.array_equal(got, intensity.astype(np.float32))
    got = make_label(before, after, region, "logistic", logistic=(k, x0), intensity=(lo, hi))
    assert np.array_equal(got, np.where(changed > 0, logistic, np.float32(0)))


def test_the_label_kernel_sees_one_array_layout_whatever_the_box_and_the_callers_strides():
    """A box inside the image, one spanning all of it and a strided caller's image (a grey channel of a colour
    image) reach the change-map kernel as C-ordered arrays: one compiled signature per dtype.  Views typed 'A'
    here and 'C' there compiled the kernel again in the middle of a run (``nsa-augment compile`` missed them)."""
    from nsa_augment.methods.nsa.labels import _measure_change, _measure_change_8bit, make_label

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    wide = colour.astype(np.uint16) * 257  # 8-bit images take the lookup kernel, the others the arithmetic one
    for before in (colour, colour[..., 1], wide, wide[..., 1]):  # contiguous, and a strided view
        after = before.copy()
        after[10:20, 12:30] //= 2
        for rows, cols in ((slice(10, 20), slice(12, 30)), (slice(0, 40), slice(0, 48))):  # part of it, all of it
            region = np.zeros((40, 48), bool)
            region[rows, cols] = True
            make_label(before, after, region, "logistic")
    for kernel in (_measure_change, _measure_change_8bit):
        layouts = {arg.layout for sig in kernel.signatures for arg in sig if hasattr(arg, "layout")}
        assert layouts == {"C"}, kernel.signatures


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("lo, hi, tol", [(0.0, 255.0, 1.0), (40.0, 200.0, 1.0), (0.0, 255.0, 2.0 / 3.0),
                                         (-5.0, 300.0, 0.0)])
def test_change_map_by_lookup_equals_the_arithmetic(channels, lo, hi, tol):
    """8-bit images: the change map's threshold and bins looked up by summed difference, bit-identical to the
    float64 kernel for every sum (ties with ``tol`` included) and every region value."""
    from nsa_augment.intensity import level_scale
    from nsa_augment.methods.nsa.labels import _change_tables, _measure_change, _measure_change_8bit

    rng = np.random.default_rng(channels)
    shape = (40, 52)
    before = rng.integers(0, 256, shape + (channels,), dtype=np.uint8)
    after = rng.integers(0, 256, shape + (channels,), dtype=np.uint8)
    sums = np.arange(255 * channels + 1)  # every summed difference in the first rows: after - before per channel
    first = np.unravel_index(np.arange(sums.size), shape)
    before[first] = 0
    after[first] = np.stack([np.clip(sums - 255 * c, 0, 255) for c in range(channels)], axis=-1).astype(np.uint8)
    region = rng.random(shape) < 0.8
    exact = (lo, hi) == (0.0, 255.0)
    quant = float(channels * (1 if exact else 4))
    args = (level_scale(lo, hi), tol, quant, 255 * quant)
    whole = before[None], after[None], region[None]
    box = (0, 1, 0, shape[0], 0, shape[1])
    expected = _measure_change(*whole, box, *args, np.empty(shape, np.uint8), np.empty(shape, np.int64))
    got = _measure_change_8bit(*whole, box, *_change_tables(channels, *args), np.empty(shape, np.uint8),
                               np.empty(shape, np.int64))
    assert 0 < expected[0].sum() < expected[0].size
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    # A box of the whole arrays is read in place: the same values as the kernel on a copy of the box
    part = (0, 1, 3, 31, 5, 44)
    cut = tuple(np.ascontiguousarray(v[:, 3:31, 5:44]) for v in whole)
    for kernel, extra in ((_measure_change, args), (_measure_change_8bit, _change_tables(channels, *args))):
        inside = kernel(*whole, part, *extra, np.empty((28, 39), np.uint8), np.empty((28, 39), np.int64))
        alone = kernel(*cut, (0, 1, 0, 28, 0, 39), *extra, np.empty((28, 39), np.uint8), np.empty((28, 39), np.int64))
        assert np.array_equal(inside[0], alone[0]) and np.array_equal(inside[1], alone[1])
        assert np.array_equal(inside[1], expected[1][3:31, 5:44])


@pytest.mark.parametrize("dims", [2, 3])
def test_median_kernel_matches_scipy_on_sparse_needs(dims):
    """The disk/ball median where ``need`` is set, equal to ``ndi.median_filter``: needed runs separated
    by every gap from 1 to 20 columns (the kernel slides across short gaps and restarts after long
    ones, so both paths and the switch between them are checked), at the borders too."""
    from nsa_augment.methods.nsa.labels import _FOOTPRINTS, footprint, median_footprint, pad_replicated

    rng = np.random.default_rng(5)
    shape = (6, 40, 130) if dims == 3 else (1, 60, 230)
    values = rng.integers(0, 40, shape).astype(np.int64)
    values[rng.random(shape) < 0.5] = 0  # mostly zero, as a label's bins are
    need = np.zeros(shape, bool)
    for z in range(shape[0]):
        for y in range(shape[1]):
            x = int(rng.integers(0, 3))
            while x < shape[2]:
                run = int(rng.integers(1, 6))
                need[z, y, x : x + run] = True
                x += run + int(rng.integers(1, 21))
    rows = _FOOTPRINTS[dims]
    table = (np.arange(40) * 0.5 + 3).astype(np.float32)  # each median bin's label value: a lookup, not the bin
    pads = (5 if dims == 3 else 0, 5, 5)
    padded = pad_replicated(values if dims == 3 else values[0], [(p, p) for p in pads[3 - dims:]])
    got = median_footprint(padded.reshape(-1), (1,) * (3 - dims) + padded.shape, pads, rows, need,
                           np.zeros(shape, np.float32), (0, 0, 0), np.zeros(40, np.int64),
                           np.empty(len(rows), np.int64), np.empty(len(rows), np.int64), table)
    ball = np.zeros((11,) * dims, bool)
    for dz, dy, hw in footprint(5, dims):
        ball[(dz + 5,) * (dims == 3) + (dy + 5, slice(5 - hw, 6 + hw))] = True
    expected = ndi.median_filter(values if dims == 3 else values[0], footprint=ball, mode="nearest")
    expected = expected if dims == 3 else expected[None]
    assert np.array_equal(got, np.where(need, table[expected], 0))


def test_pad_replicated_is_numpy_edge_padding_of_the_masked_values():
    from nsa_augment.methods.nsa.labels import pad_replicated

    rng = np.random.default_rng(3)
    for shape, widths in [((7, 9), ((5, 5), (5, 5))), ((1, 1), ((2, 0), (3, 1))), ((4, 6, 5), ((5, 5),) * 3),
                          ((3, 4, 2), ((0, 0), (2, 0), (0, 1))), ((2, 3), ((0, 0), (0, 4)))]:
        values = rng.integers(1, 500, shape).astype(np.uint16)
        mask = (rng.random(shape) < 0.5).astype(np.uint8)
        assert np.array_equal(pad_replicated(values, widths), np.pad(values, widths, mode="edge"))
        got = pad_replicated(values.copy(), widths, mask)
        assert got.dtype == np.uint16 and np.array_equal(got, np.pad(values * mask, widths, mode="edge"))
    values = rng.integers(1, 500, (4, 5)).astype(np.uint16)  # no padding: the product in place
    mask = (rng.random((4, 5)) < 0.5).astype(np.uint8)
    expected = values * mask
    assert pad_replicated(values, ((0, 0), (0, 0)), mask) is values and np.array_equal(values, expected)


def test_median_kernel_refuses_footprints_that_leave_the_values():
    """The kernel reads without clamping: a needed pixel whose footprint would reach beyond the
    values (a side left unpadded too close to it), or values of another size, stop it before it
    reads outside the array; needed pixels far enough from an unpadded side are computed."""
    from nsa_augment.methods.nsa.labels import _FOOTPRINTS, median_footprint, pad_replicated

    rows = _FOOTPRINTS[2]
    values = np.arange(30 * 32, dtype=np.int64).reshape(30, 32) % 7

    def run(need, widths):
        padded = pad_replicated(values.copy(), widths)
        return median_footprint(padded.reshape(-1), (1,) + padded.shape, (0, widths[0][0], widths[1][0]), rows,
                                need[None], np.zeros((1, 30, 32), np.float32), (0, 0, 0), np.zeros(7, np.int64),
                                np.empty(len(rows), np.int64), np.empty(len(rows), np.int64),
                                np.arange(7, dtype=np.float32))

    need = np.zeros((30, 32), bool)
    need[5:25, 5:27] = True  # 5 px from every side: no padding needed
    full = run(np.ones((30, 32), bool), ((5, 5), (5, 5)))
    assert np.array_equal(run(need, ((0, 0), (0, 0))), np.where(need[None], full, 0))
    for side in range(4):
        near = need.copy()
        near[(4, 25, slice(None), slice(None))[side], (slice(None), slice(None), 4, 27)[side]] = True
        with pytest.raises(ValueError, match="footprint leaves the values"):
            run(near, ((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="must have the given shape"):
        median_footprint(np.ones(30 * 32 - 1, np.int64), (1, 30, 32), (0, 0, 0), rows, need[None],
                         np.zeros((1, 30, 32), np.float32), (0, 0, 0), np.zeros(7, np.int64),
                         np.empty(len(rows), np.int64), np.empty(len(rows), np.int64), np.zeros(7, np.float32))


def test_median_kernel_writes_its_part_of_a_larger_map_and_nothing_else():
    """The label writes each group's median straight into the whole label map: at ``out_origin``, only
    where ``need`` is set (the rest of the map keeps its values); a part that would not fit is an error,
    not a write outside the array."""
    from nsa_augment.methods.nsa.labels import _FOOTPRINTS, median_footprint, pad_replicated

    rows = _FOOTPRINTS[2]
    rng = np.random.default_rng(8)
    values = rng.integers(0, 9, (20, 24)).astype(np.int64)
    need = rng.random((1, 20, 24)) < 0.6
    padded = pad_replicated(values, ((5, 5), (5, 5)))

    def run(out, origin):
        return median_footprint(padded.reshape(-1), (1,) + padded.shape, (0, 5, 5), rows, need, out, origin,
                                np.zeros(9, np.int64), np.empty(len(rows), np.int64), np.empty(len(rows), np.int64),
                                np.arange(1, 10, dtype=np.float32))

    alone = run(np.zeros((1, 20, 24), np.float32), (0, 0, 0))
    big = np.full((1, 40, 50), -1.0, np.float32)
    big[0, 7:27, 11:35] = 0.0
    run(big, (0, 7, 11))
    expected = np.full((1, 40, 50), -1.0, np.float32)
    expected[0, 7:27, 11:35] = alone[0]
    assert np.array_equal(big, expected)
    for origin in [(0, 21, 11), (0, 7, 27), (1, 7, 11), (0, -1, 0)]:
        with pytest.raises(ValueError, match="must lie inside out"):
            run(np.zeros((1, 40, 50), np.float32), origin)


def test_label_value_ranges_and_consistency(tiles128):
    rng_seed = 11
    outs = {}
    for mode in ("binary", "continuous", "logistic"):
        cfg = presets.get("mvtec/carpet").replace(label=mode)
        rng = np.random.default_rng(rng_seed)
        outs[mode] = [synthesize(tiles128[i % 4], tiles128[(i + 1) % 4], cfg, rng) for i in range(30)]
    for (img_b, lab_b, info_b), (img_c, lab_c, info_c), (img_l, lab_l, _) in zip(*outs.values()):
        # the label mode does not change the image (same random stream)
        assert np.array_equal(img_b, img_c) and np.array_equal(img_b, img_l)
        assert set(np.unique(lab_b)) <= {0.0, 1.0}
        assert set(np.unique(lab_c)) <= {0.0, np.float32(info_c.factor)}
        assert np.array_equal(lab_c > 0, lab_b > 0)
        assert lab_l.min() >= 0.0 and lab_l.max() < 1.0
        assert not (lab_l > 0)[lab_b == 0].any()  # zero outside changed pixels


def test_label_zero_where_nothing_changed_and_image_unchanged_outside_boxes(tiles128):
    cfg = presets.get("mvtec/grid")
    rng = np.random.default_rng(2)
    for i in range(40):
        dst = tiles128[i % 4]
        image, label, info = synthesize(dst, tiles128[(i + 1) % 4], cfg, rng)
        boxes = np.zeros(dst.shape[:2], bool)
        for p in info.patches:
            y0, y1, x0, x1 = p.dst_box
            boxes[y0:y1, x0:x1] = True
        assert np.array_equal(image[~boxes], dst[~boxes])
        moved = np.abs(image.astype(float) - dst).mean(axis=2) > cfg.tol
        # a label needs changed pixels in its 5x5 neighbourhood (the median is over that window)
        near_change = ndi.maximum_filter(moved, size=5)
        assert not label[~near_change].any()
        if info.patches:
            assert label.max() > 0


# --- reproducibility ------------------------------------------------------------------------------


def _digest(tiles, seed, name="mvtec/hazelnut"):
    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    for i in range(5):
        img, lab, _ = synthesize(tiles[i % 4], tiles[(i + 1) % 4], name, rng)
        h.update(img.tobytes())
        h.update(lab.tobytes())
    return h.hexdigest()


def test_same_seed_same_output_across_processes(tiles128):
    here = _digest(tiles128, 123, "mvtec/carpet")
    assert _digest(tiles128, 123, "mvtec/carpet") == here
    assert _digest(tiles128, 124, "mvtec/carpet") != here
    code = (
        "import sys, numpy as np; sys.path.insert(0, 'tests');"
        "from conftest import _load_rgb; from test_synthesis import _digest;"
        "print(_digest(_load_rgb(128, 4), 123, 'mvtec/carpet'))"
    )
    from conftest import ROOT

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


# --- shapes, dtypes, sizes ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(32, 90),
    w=st.integers(32, 90),
    sh=st.integers(16, 90),
    sw=st.integers(16, 90),
    channels=st.sampled_from([None, 1, 3, 5]),
    dtype=st.sampled_from([np.uint8, np.float32]),
    name=st.sampled_from(["mvtec/carpet", "mvtec/screw", "mvtec/cable", "mvtec/capsule", "chestxray"]),
    seed=st.integers(0, 2**31),
)
def test_any_size_channels_dtype(h, w, sh, sw, channels, dtype, name, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    sshape = (sh, sw) if channels is None else (sh, sw, channels)
    dst = rng.integers(0, 256, shape).astype(np.uint8)
    src = rng.integers(0, 256, sshape).astype(np.uint8)
    if dtype == np.float32:
        dst, src = dst.astype(np.float32) / 255, src.astype(np.float32) / 255
    dst_copy, src_copy = dst.copy(), src.copy()
    image, label, info = synthesize(dst, src, name, rng)
    assert image.shape == dst.shape and image.dtype == dst.dtype and image.flags.c_contiguous
    assert label.shape == (h, w) and label.dtype == np.float32
    assert np.array_equal(dst, dst_copy) and np.array_equal(src, src_copy)
    if dtype == np.float32:
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    assert np.isfinite(label).all() and label.min() >= 0


_IMAGE_PRESETS = sorted(n for n in presets.names() if presets.get(n).dims == 2)


def _fuzz_image(rng, shape, dtype, blob):
    """Levels 30..220 as ``dtype`` (a darker disc in the middle with ``blob``: something for object presets to find)."""
    values = rng.integers(30, 221, shape)
    if blob:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        disc = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape[:2]) / 3) ** 2
        values = np.where(disc.reshape(disc.shape + (1,) * (len(shape) - 2)), values // 4, values)
    return levels_as(values, dtype)


@settings(max_examples=30, deadline=None)
@given(
    size=st.tuples(st.integers(2, 120), st.integers(2, 120)),
    source_size=st.one_of(st.none(), st.tuples(st.integers(2, 120), st.integers(2, 120))),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
    name=st.sampled_from(_IMAGE_PRESETS),
    overrides=st.fixed_dictionaries({}, optional={
        "label": st.sampled_from(["binary", "continuous", "intensity", "logistic"]),
        "blend": st.sampled_from(["poisson", "paste", "alpha"]),
        "gradients": st.sampled_from(["normal", "mixed", "mix", "interpolated"]),
        "num_patches": st.integers(1, 5),
        "rescale": st.booleans(),
        "shift": st.booleans(),
    }),
    blob=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_every_preset_renders_its_plan_and_labels_only_what_changed(size, source_size, channels, dtype, name,
                                                                    overrides, blob, seed):
    """Any image preset, option, dtype, channel count and size (down to 2 px, the source of another size):
    no error, the caller's arrays untouched, a label only next to pixels that changed, and the plan, drawn
    apart and rendered, gives the very same example."""
    from nsa_augment import plan_anomaly, render_anomaly

    cfg = presets.get(name)
    if overrides.get("blend", "poisson") != "poisson":
        cfg = cfg.replace(poisson="exact")  # the OpenCV formulation is a Poisson blend only
    cfg = cfg.replace(**overrides)
    if dtype == np.int16 and cfg.intensity_range is None:
        cfg = cfg.replace(intensity_range="image")
    rng = np.random.default_rng(seed)
    with_channels = (lambda hw: hw) if channels is None else (lambda hw: hw + (channels,))
    dst = _fuzz_image(rng, with_channels(size), dtype, blob)
    src = _fuzz_image(rng, with_channels(source_size or size), dtype, blob)
    dst_copy, src_copy = dst.copy(), src.copy()
    image, label, info = synthesize(dst, src, cfg, np.random.default_rng(seed + 1))
    assert np.array_equal(dst, dst_copy) and np.array_equal(src, src_copy)
    assert image.shape == dst.shape and image.dtype == dst.dtype
    assert label.shape == size and label.dtype == np.float32 and np.isfinite(label).all() and label.min() >= 0
    assert label.max() <= (255 if cfg.label == "intensity" else 1)
    if dtype == np.float32:
        assert np.isfinite(image).all()
    changed = image != dst if image.ndim == 2 else (image != dst).any(axis=-1)
    # A label pixel is set only where most of its 5x5 window changed (the label's binary median): at most
    # 2 px from a changed pixel; an intensity label is the disk median of the change: within its radius, 5 px.
    reach = 5 if cfg.label == "intensity" else 2
    near = ndi.maximum_filter(changed, size=2 * reach + 1, mode="constant")
    assert not (label.astype(bool) & ~near).any(), "a label where nothing changed"
    plan = plan_anomaly(dst, src, cfg, np.random.default_rng(seed + 1))
    image2, label2 = render_anomaly(dst, src, cfg, plan)[:2]
    assert np.array_equal(image2, image) and np.array_equal(label2, label)


@pytest.mark.parametrize("name", ["mvtec/bottle", "mvtec/leather"])
def test_float_and_uint8_inputs_agree(tiles128, name):
    cfg = presets.get(name).replace(object_masks=None)
    a = synthesize(tiles128[0], tiles128[1], cfg, np.random.default_rng(4))
    b = synthesize(tiles128[0].astype(np.float32) / 255, tiles128[1].astype(np.float32) / 255, cfg, np.random.default_rng(4))
    assert a[2].patches == b[2].patches
    diff = np.abs(a[0].astype(np.float32) - b[0] * 255)
    if cfg.gradients == "normal":
        # uint8 rounding (resampling, then after each patch) is the only difference
        assert diff.max() <= 2.0
    else:
        # mixed gradients pick the stronger gradient per edge, a discontinuous rule: a 0.5-level
        # rounding difference can flip a choice and move a few isolated pixels by several levels
        assert diff.mean() < 0.25 and np.quantile(diff, 0.99) <= 2.0
    assert np.abs(a[1] - b[1]).mean() < 0.02


def test_same_source_cuts_from_destination(tiles128):
    cfg = presets.get("mvtec/cable").replace(same_source=True, label="binary")
    image, label, info = synthesize(tiles128[0], None, cfg, np.random.default_rng(0))
    assert info.patches and label.max() == 1.0


@pytest.mark.parametrize("blend", ["paste", "alpha"])
def test_other_blend_modes(tiles128, blend):
    cfg = presets.get("mvtec/cable").replace(blend=blend, label="continuous", rescale=False)
    image, label, info = synthesize(tiles128[0], tiles128[1], cfg, np.random.default_rng(1))
    p = info.patches[0]
    (sy0, sy1, sx0, sx1), (dy0, dy1, dx0, dx1) = p.src_box, p.dst_box
    if blend == "paste" and len(info.patches) == 1:
        assert np.array_equal(image[dy0:dy1, dx0:dx1], tiles128[1][sy0:sy1, sx0:sx1])
    assert info.gradients is None


# --- tiny images and bad input --------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3])
def test_too_small_returns_input_with_reason(size):
    img = np.arange(size * size * 3, dtype=np.uint8).reshape(size, size, 3)
    image, label, info = synthesize(img, img.copy(), "mvtec/carpet", np.random.default_rng(0))
    assert np.array_equal(image, img) and image is not img
    assert not label.any() and not info.patches
    assert "too small" in info.skipped[0]


def test_small_images_work():
    rng = np.random.default_rng(0)
    for size in (8, 12, 20, 32):
        img = rng.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)
        image, label, info = synthesize(img, img[::-1].copy(), "mvtec/carpet", rng)
        assert image.shape == img.shape


@pytest.mark.parametrize(
    "dst, src, exc, match",
    [
        (np.zeros((32, 32, 3), np.float64), None, TypeError, "uint8, uint16, int16 or float32"),
        (np.zeros((32, 32, 3), np.int32), None, TypeError, "uint8, uint16, int16 or float32"),
        (np.zeros((2, 32, 32, 3), np.uint8), None, ValueError, "shape"),
        (np.zeros((32,), np.uint8), None, ValueError, "shape"),
        (np.full((32, 32), 1.5, np.float32), None, ValueError, r"read as \[0, 1\] unless told otherwise.*intensity_range"),
        (np.full((32, 32), np.nan, np.float32), None, ValueError, "NaN"),
        (np.zeros((0, 32), np.uint8), None, ValueError, "at least 2x2"),
        (np.zeros((1, 1), np.uint8), None, ValueError, "at least 2x2"),
        (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.float32), TypeError, "must match"),
        (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 1), np.uint8), ValueError,
         "1 channel but destination has 3: give both the same channels"),
        (np.zeros((32, 32), np.uint8), [[1, 2]], TypeError, "source must be a numpy.ndarray"),
    ],
)
def test_bad_images(dst, src, exc, match):
    with pytest.raises(exc, match=match):
        synthesize(dst, src, "mvtec/carpet", np.random.default_rng(0))


_B = np.zeros((32, 32, 3), np.float32)
_R = np.zeros((32, 32), bool)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((_B, _B[:30], _R, "logistic"), {}, ValueError, r"after must have the shape and dtype of before"),
        ((_B, (_B * 255).astype(np.uint8), _R, "logistic"), {}, ValueError, "after must have the shape and dtype"),
        ((_B, np.full_like(_B, np.nan), _R, "logistic"), {}, ValueError, "after contains NaN"),
        ((_B.astype(np.float64), _B.astype(np.float64), _R, "binary"), {}, TypeError, "before must have dtype"),
        ((_B.tolist(), _B, _R, "binary"), {}, TypeError, "before must be a numpy.ndarray"),
        ((_B, _B, _R[:20], "logistic"), {}, ValueError, r"region must have the image's shape \(32, 32\)"),
        ((_B, _B, _R[None], "logistic"), {}, ValueError, "a 3-D region makes before and after volumes"),
        ((_B, _B, _R.astype(np.uint8), "logistic"), {}, TypeError, r"region must be boolean.*region != 0"),
        ((_B, _B, [[True]], "logistic"), {}, ValueError, "region must be a boolean array"),
        ((_B, _B, _R, "soft"), {}, ValueError, "label mode must be one of"),
        ((_B, _B, _R, "logistic"), {"tol": float("nan")}, ValueError, "tol must be a finite number"),
        ((_B, _B, _R, "logistic"), {"logistic": (1.0,)}, ValueError, "logistic must be a pair"),
        ((_B, _B, _R, "logistic"), {"intensity": (1.0, 1.0)}, ValueError, "lo < hi"),
    ],
)
def test_make_label_rejects_what_it_cannot_label(args, kwargs, exc, match):
    """make_label is public: mismatched or non-finite arrays are errors, never a label of the wrong pixels."""
    from nsa_augment.methods.nsa.labels import make_label

    with pytest.raises(exc, match=match):
        make_label(*args, **kwargs)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (([[1, 2]], [(200, 60)]), {}, TypeError, "image must be a numpy.ndarray"),
        ((_B, [(200,)]), {}, ValueError, "each of pairs must be a pair of numbers"),
        ((_B, []), {}, ValueError, "pairs must be a non-empty sequence"),
        ((_B, [(200, 60)]), {"box": (0, 500, 0, 10)}, ValueError, r"must be a non-empty part of the 32x32 image"),
        ((_B, [(200, 60)]), {"box": (0, 5.5, 0, 10)}, ValueError, "box must be four integers"),
        ((_B, [(200, 60)]), {"intensity": (1.0, 0.0)}, ValueError, "lo < hi"),
    ],
)
def test_object_mask_rejects_bad_arguments(args, kwargs, exc, match):
    """A box beyond the image used to come back as a smaller mask, silently."""
    with pytest.raises(exc, match=match):
        object_mask(*args, **kwargs)


def test_bad_rng_and_config():
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        synthesize(img, img, "mvtec/carpet", 0)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        synthesize(img, img, "mvtec/carpet", np.random.RandomState(0))
    with pytest.raises(ValueError, match="unknown preset 'mvtec/nope'"):
        synthesize(img, img, "mvtec/nope", np.random.default_rng(0))
    with pytest.raises(TypeError, match="config must be"):
        synthesize(img, img, {"num_patches": 2}, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width_bounds": ((0.3, 0.1), (0.1, 0.2))}, "0 < min <= max <= 0.5"),
        ({"width_bounds": ((0.0, 0.1), (0.1, 0.2))}, "0 < min <= max <= 0.5"),
        ({"width_bounds": (0.1, 0.2)}, "width_bounds must be"),
        ({"num_patches": 0}, "num_patches"),
        ({"gamma": (2, -1, 0)}, "gamma"),
        ({"rescale_bounds": (2.0, 1.0)}, "rescale_bounds"),
        ({"rescale_clip": "half"}, "rescale_clip"),
        ({"gradients": "poisson"}, "gradients"),
        ({"label": "soft"}, "label"),
        ({"object_masks": ()}, "object_masks"),
        ({"object_masks": ((300, 10),)}, "0..255"),
        ({"min_object": 1.5}, "min_object"),
        ({"logistic": (0, 3)}, "logistic k"),
        ({"factor_range": (0.9, 0.1)}, "factor_range"),
        ({"tol": float("nan")}, "tol"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_inconsistent_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NSAConfig(**kwargs)


def test_plan_then_render_equals_synthesize(tiles128, object_scene):
    """Rendering a plan alone computes each patch's object masks on its boxes; synthesize crops the masks
    its planning computed for the whole images: the same examples, also for a source that is the destination."""
    from nsa_augment import plan_anomaly, render_anomaly

    scene = tuple(object_scene)
    cases = [((tiles128[0], tiles128[1]), "mvtec/carpet", 8)] + [(scene, "mvtec/bottle", seed) for seed in range(6)]
    cases += [((scene[0], scene[0]), "mvtec/hazelnut", seed) for seed in range(3)]
    for (dst, src), name, seed in cases:
        image, label, info = synthesize(dst, src, name, np.random.default_rng(seed))
        plan = plan_anomaly(dst, src, name, np.random.default_rng(seed))
        assert plan.patches == info.patches and plan.skipped == info.skipped
        image2, label2 = render_anomaly(dst, src, name, plan)
        assert np.array_equal(image, image2) and np.array_equal(label, label2), (name, seed)
    with pytest.raises(TypeError, match="plan must be"):
        render_anomaly(dst, src, name, {"patches": []})


def test_a_plan_with_patches_opencv_cannot_blend_is_not_rendered_with_opencv():
    """plan_anomaly skips patches under OpenCV's minimum only when drawing for poisson='opencv'; such a patch
    in a plan drawn for the exact solve failed inside NumPy ('negative dimensions') when rendered with opencv."""
    from nsa_augment import plan_anomaly, render_anomaly

    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    cfg = presets.get("mvtec/carpet")
    plans = (plan_anomaly(img, img[::-1].copy(), cfg, np.random.default_rng(s)) for s in range(300))
    plan = next(p for p in plans if any(min(q.dst_size) < 5 for q in p.patches))
    render_anomaly(img, img[::-1].copy(), cfg, plan)  # the config it was drawn with renders it
    with pytest.raises(ValueError, match="seamlessClone.*: this plan was drawn with a config other than"):
        render_anomaly(img, img[::-1].copy(), cfg.replace(poisson="opencv"), plan)


def test_a_view_of_the_destination_is_another_image(object_scene):
    """Only the very same array may share the destination's object mask; a view of part of it is another image."""
    dst = np.ascontiguousarray(np.concatenate([object_scene[0], np.full((64, 96, 3), 235, np.uint8)]))
    view, copy = dst[96:], dst[96:].copy()  # plain background: no object to cut from
    for source in (view, copy):
        _, label, plan = synthesize(dst, source, "mvtec/bottle", np.random.default_rng(0))
        assert not plan.patches and label.max() == 0, plan.skipped


@pytest.mark.parametrize("field, value, match", [
    ("num_patches", 10**9, r"num_patches must be an integer in 1\.\.100"),
    ("max_attempts", True, "max_attempts must be an integer"),
    ("max_attempts", 10**9, "max_attempts must be an integer"),
    ("rescale", "yes", "rescale must be True or False"),
    ("gamma", 5, "gamma must be"),
    ("object_masks", 7, "object_masks must be"),
    ("poisson", "opencv2", "poisson must be one of"),
])
def test_config_values_are_bounded_and_typed(field, value, match):
    with pytest.raises(ValueError, match=match):
        NSAConfig(**{field: value})
    with pytest.raises(ValueError, match="applies to blend='poisson' only"):
        NSAConfig(poisson="opencv", blend="paste")


@pytest.mark.parametrize("gradients, factor", [("normal", 1.0), ("mixed", 1.0), ("interpolated", 0.4)])
@pytest.mark.parametrize("channels", [3, 1])
def test_opencv_mode_blends_as_the_reference_seamlessclone_call(gradients, factor, channels, tiles128):
    """poisson='opencv' reproduces the reference's call: the whole box as mask, its ring zeroed, centred on the box."""
    import cv2

    from nsa_augment.methods.nsa.blending import blend_patch_opencv

    dst, src = tiles128[0], tiles128[1]
    if channels == 1:
        dst, src = np.ascontiguousarray(dst[:, :, :1]), np.ascontiguousarray(src[:, :, :1])
    flag = cv2.MIXED_CLONE if gradients == "mixed" else cv2.NORMAL_CLONE
    for (h, w), (y0, x0) in (((40, 60), (30, 20)), ((31, 50), (5, 70)), ((17, 24), (100, 90)), ((128 - 9, 64), (4, 0))):
        patch = np.ascontiguousarray(src[3 : 3 + h, 50 : 50 + w]) if h < 100 else np.ascontiguousarray(src[:h, :w])
        ours = dst.copy()
        blend_patch_opencv(ours, patch, (y0, y0 + h, x0, x0 + w), gradients=gradients, factor=factor, truncate=True,
                           clip=True)
        mask = np.zeros((h, w), np.uint8)
        mask[1:-1, 1:-1] = np.uint8(np.ceil(factor * 255))  # the reference's int_factor * patch_mask, ring zeroed
        center = (x0 + w - w // 2, y0 + h // 2)  # the reference's centre (even widths land exactly on the box)
        if channels == 1:  # the reference pads grayscale to 3 channels for OpenCV and keeps channel 0
            pad = lambda a: np.concatenate([a, np.zeros_like(a), np.zeros_like(a)], axis=2)  # noqa: E731
            ref = cv2.seamlessClone(pad(patch), pad(dst), mask, center, flag)[:, :, :1]
        else:
            ref = cv2.seamlessClone(patch, dst, mask, center, flag)
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 1, (h, w)
        assert (ours[y0 : y0 + 2] == dst[y0 : y0 + 2]).all()  # the box's outer 2 px stay the destination's


def test_opencv_mode_skips_patches_seamlessclone_cannot_blend(tiles128):
    cfg = presets.get("mvtec/carpet").replace(poisson="opencv", width_bounds=((0.01, 0.03), (0.01, 0.03)), gamma=None)
    reasons = []
    for seed in range(20):
        _, _, plan = synthesize(tiles128[0], tiles128[1], cfg, np.random.default_rng(seed))
        reasons += list(plan.skipped)
        for p in plan.patches:
            h, w = p.dst_size
            assert (h - 2) * (w - 2) >= 50 and min(h, w) >= 5
    assert any("50-pixel minimum" in r for r in reasons)


def test_opencv_mode_is_fainter_than_the_exact_blend(tiles128):
    """The reference's blend changes the patch boxes less than our whole-box solve (docs/algorithm.md)."""
    strength = {}
    for poisson in ("exact", "opencv"):
        cfg = presets.get("mvtec/tile").replace(poisson=poisson)
        changes = []
        for seed in range(30):
            dst, src = tiles128[seed % 4], tiles128[(seed + 1) % 4]
            image, _, plan = synthesize(dst, src, cfg, np.random.default_rng(seed))
            for p in plan.patches:
                y0, y1, x0, x1 = p.dst_box
                changes.append(np.abs(image[y0:y1, x0:x1].astype(float) - dst[y0:y1, x0:x1]).mean())
        strength[poisson] = np.mean(changes)
    assert strength["opencv"] < 0.8 * strength["exact"]


# --- bit depth: 16-bit and any-range float images, one intensity rule (issue: medical and scientific) -----


def _rescaled_pair(tiles128, channels=3):
    img8 = [t[:, :, :channels].copy() for t in tiles128[:2]]
    img16 = [t.astype(np.uint16) * 257 for t in img8]  # the exact 16-bit rescaling
    return img8, img16


@pytest.mark.parametrize("rule, rule16", [("dtype", "dtype"), ("image", "image"), ((20.0, 230.0), (20.0 * 257, 230.0 * 257))])
@pytest.mark.parametrize("preset", ["mvtec/hazelnut", "mvtec/carpet", "chestxray"])
def test_an_image_and_its_exact_16_bit_rescaling_give_the_same_plan_and_label(rule, rule16, preset, tiles128):
    img8, img16 = _rescaled_pair(tiles128, 1 if preset == "chestxray" else 3)
    cfg = presets.get(preset)
    agree = []
    for seed in range(6):
        a = synthesize(img8[0], img8[1], cfg.replace(intensity_range=rule), np.random.default_rng(seed))
        b = synthesize(img16[0], img16[1], cfg.replace(intensity_range=rule16), np.random.default_rng(seed))
        assert a[2] == b[2]  # the same plan, bit for bit
        assert b[0].dtype == np.uint16 and b[0].shape == img16[0].shape
        agree.append(((a[1] > 0) == (b[1] > 0)).mean())
        assert np.abs(a[1] - b[1]).mean() < 0.015  # the 8-bit result rounds each pixel by up to half a level
    # labels equal up to where the 8-bit result's rounding moved a pixel across tol
    assert np.mean(agree) > 0.98  # (faint, near-tol blends such as the chest X-ray preset make the most of these)
    # one patch with source gradients: the same blend in 16-bit units up to the 8-bit rounding of the resampled
    # patch (half a level in the guidance) and of the result (with more patches, or mixed gradients, the 8-bit
    # rounding of one patch also steers the next one's blend)
    single = cfg.replace(num_patches=1, gradients="normal", intensity_range=rule)
    for seed in range(4):
        a = synthesize(img8[0], img8[1], single, np.random.default_rng(seed))
        b = synthesize(img16[0], img16[1], single.replace(intensity_range=rule16), np.random.default_rng(seed))
        assert np.abs(b[0].astype(float) - 257.0 * a[0]).max() <= 257 * 1.5


def test_twelve_bit_data_in_a_16_bit_image_gets_anomalies_with_its_preset(tiles128):
    """The bug this replaces: 12-bit values read as 16-bit crushed to 4 bits and an empty chest X-ray object mask."""
    gray = tiles128[0][:, :, 0].astype(np.uint16) * 16  # 12-bit data: 0..4080
    other = tiles128[1][:, :, 0].astype(np.uint16) * 16
    labelled = 0
    for seed in range(8):
        image, label, plan = synthesize(gray, other, "chestxray", np.random.default_rng(seed))
        assert image.dtype == np.uint16 and image.max() <= 65535
        labelled += label.max() > 0
    assert labelled >= 6


def test_float_images_of_any_range_need_a_range_and_then_behave_as_unit_images(tiles128):
    # Mid-range images: a unit-range result is clipped to [0, 1] and a CT-range one is not, so the two
    # agree only where no blend overshoots; these keep every result inside (checked below).
    unit = (0.25 + 0.5 * tiles128[0] / 255).astype(np.float32)
    other = (0.25 + 0.5 * tiles128[1] / 255).astype(np.float32)
    hu = unit * 2000 - 1000  # e.g. CT numbers
    hu_other = other * 2000 - 1000
    with pytest.raises(ValueError, match="intensity_range"):
        synthesize(hu, hu_other, "mvtec/carpet", np.random.default_rng(0))
    a = synthesize(unit, other, "mvtec/carpet", np.random.default_rng(3))
    b = synthesize(hu, hu_other, presets.get("mvtec/carpet").replace(intensity_range=(-1000.0, 1000.0)),
                   np.random.default_rng(3))
    assert a[2] == b[2] and 0 < a[0].min() and a[0].max() < 1
    assert np.abs((b[0] + 1000) / 2000 - a[0]).max() < 1e-3
    assert np.abs(a[1] - b[1]).max() < 0.02


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_every_method_takes_16_bit_images_and_keeps_the_dtype(dtype, tiles128):
    from nsa_augment import methods

    base = tiles128[0].astype(np.int32) * 8 - (1000 if dtype == np.int16 else 0)
    dst = base.astype(dtype)
    src = (tiles128[1].astype(np.int32) * 8 - (1000 if dtype == np.int16 else 0)).astype(dtype)
    for name in methods.METHODS:
        image, label, _ = methods.generator(name, "mvtec/carpet")(dst, src, np.random.default_rng(1))
        assert image.dtype == dtype and image.shape == dst.shape and label.dtype == np.float32
        changed = (image != dst).any(axis=2)
        assert changed.any() and label.max() > 0, name
        assert not changed[label == 0].all() or name.startswith("nsa") or name in ("fpi", "pii")


def test_config_intensity_range_is_validated():
    for bad in ("window", (5, 1), (0, float("inf")), 3):
        with pytest.raises(ValueError, match="intensity_range"):
            presets.get("mvtec/carpet").replace(intensity_range=bad)


def test_small_images_never_get_a_patch_without_a_label(tiles128):
    """On a 40x40 image a 3x4-px patch is possible; the 5x5 label median would remove its label, so it is skipped."""
    small = [np.ascontiguousarray(t[:40, :40]) for t in tiles128]
    cfg = presets.get("mvtec/carpet").replace(label="binary")
    thin = 0
    for seed in range(60):
        image, label, plan = synthesize(small[seed % 4], small[(seed + 1) % 4], cfg, np.random.default_rng(seed))
        assert all(median_keeps(p.dst_size) for p in plan.patches)
        thin += any("too small for the label's 5x5 median" in r for r in plan.skipped)
    assert thin > 0


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint8, 1), (np.uint16, 3), (np.float32, 3),
                                             (np.float32, 4)])
def test_object_mask_is_its_definition(tiles128, dtype, channels):
    """object_mask against NumPy and OpenCV: the channel mean (numpy.mean in float64) on the 0..255 scale,
    away from every (level, threshold) pair, then a 7x7 median (cv2.medianBlur, replicated borders)."""
    image = np.dstack([tiles128[0], tiles128[1][..., :1]])[..., :channels].astype(np.float64)
    image = {np.uint8: image, np.uint16: image * 257, np.float32: image / 255}[dtype].astype(dtype)
    lo, hi = {np.uint8: (10.0, 250.0), np.uint16: (2570.0, 64000.0), np.float32: (0.05, 0.9)}[dtype]  # a window
    level = (image.astype(np.float64).mean(axis=-1) - lo) * 255.0 / (hi - lo)
    q10, q50, q90 = np.percentile(level, [10, 50, 90])  # pairs that split whatever images these are
    pairs = [(round(q50, 1), round((q90 - q10) / 4, 1)), (round(q90, 1), 2.0)]
    votes = np.ones(image.shape[:2], bool)
    for v, t in pairs:
        votes &= np.abs(level - v) > t
    expected = cv2.medianBlur(votes.astype(np.uint8), 7).astype(bool)
    got = object_mask(image, pairs, intensity=(lo, hi))
    assert 0.05 < expected.mean() < 0.95 and np.array_equal(got, expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("lo, hi, pairs", [(0.0, 255.0, [(100.0, 20.0)]),  # ties: |m - level| == threshold
                                           (10.0, 250.0, [(200.0, 30.5), (20.0, 7.25)]),
                                           (-3.0, 61.0, [(128.0, 127.9)]),  # background from sum 0
                                           (0.0, 255.0, [(250.0, 10.0), (40.0, 3.0)])])  # ... up to the top
def test_object_votes_by_channel_sum_equal_the_arithmetic(channels, lo, hi, pairs):
    """8-bit images vote by their channel sums' background intervals: bit-identical to the float64 kernel for every sum."""
    from nsa_augment.methods.nsa.objects import (
        _sum_dtype,
        _threshold_channel_mean,
        _vote_by_channel_sum,
        _vote_intervals,
        _votes_by_sum,
    )

    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (48, 64, channels), dtype=np.uint8)
    sums = np.arange(255 * channels + 1)  # every channel sum, spread over the channels, in the first rows
    image[:, :, :][np.unravel_index(np.arange(sums.size), image.shape[:2])] = np.stack(
        [np.clip(sums - 255 * c, 0, 255) for c in range(channels)], axis=-1).astype(np.uint8)
    levels, thresholds = (np.array(v, np.float64) for v in zip(*pairs))
    expected = _threshold_channel_mean(image, levels, thresholds, lo, hi - lo, np.empty(image.shape[:2]),
                                       np.ones(image.shape[:2], np.uint8))
    key = (channels, tuple(levels.tolist()), tuple(thresholds.tolist()), lo, hi - lo)
    table, intervals = _votes_by_sum(*key), _vote_intervals(*key)
    got = _vote_by_channel_sum(image, *intervals, np.empty(image.shape[1], _sum_dtype(channels)),
                               np.empty(image.shape[:2], np.uint8))
    assert 0 < expected.sum() < expected.size and np.array_equal(got, expected)
    assert np.array_equal(table[np.arange(255 * channels + 1)], expected.reshape(-1)[:255 * channels + 1])
    assert len(intervals[0]) == len(pairs)  # one background run per pair in these cases
    assert not table.flags.writeable and not intervals[0].flags.writeable


@pytest.mark.parametrize("size", [3, 5, 7])
def test_binary_median_is_cv2_median_blur(size):
    """Window counts equal cv2.medianBlur on 0/1 images of every shape from 1 px, sparse to dense, and on volumes."""
    from scipy import ndimage

    from nsa_augment.methods.nsa.objects import binary_median

    rng = np.random.default_rng(size)
    shapes = [(1, 1), (1, 9), (9, 1), (2, 3), (4, 4), (6, 5), (7, 8), (13, 64), (64, 13), (97, 131)]
    for shape in shapes:
        for density in (0.1, 0.5, 0.9):
            mask = (rng.random(shape) < density).astype(np.uint8)
            assert np.array_equal(binary_median(mask, size), cv2.medianBlur(mask, size)), (shape, density)
    strided = (rng.random((40, 60)) < 0.5).astype(np.uint8)[::2, 1::3]  # a view: not contiguous
    assert np.array_equal(binary_median(strided, size), cv2.medianBlur(np.ascontiguousarray(strided), size))
    volume = (rng.random((6, 9, 11)) < 0.5).astype(np.uint8)
    expected = ndimage.median_filter(volume, size=size, mode="nearest")
    assert np.array_equal(binary_median(volume, size), expected)


def test_median_keeps_is_the_label_median_on_a_box():
    """The skip rule agrees with the label's own median for every small box placed inside an image."""
    from nsa_augment.methods.nsa.objects import binary_median

    for dims in (2, 3):
        for size in np.ndindex(*(7,) * dims):
            size = tuple(n + 1 for n in size)
            canvas = np.zeros(tuple(n + 8 for n in size), np.uint8)
            canvas[tuple(slice(4, 4 + n) for n in size)] = 1
            assert median_keeps(size) == bool(binary_median(canvas, 5).any()), size


def _bilinear_reference(src, box, size, margin):
    """Patch resampling by its definition, one output pixel at a time (float64, round half up)."""
    H, W, C = src.shape
    (y0, y1, x0, x1), (h, w) = box, size
    out = np.zeros((h + 2 * margin, w + 2 * margin, C))
    for a, i in enumerate(range(-margin, h + margin)):
        y = min(max(y0 + (i + 0.5) * ((y1 - y0) / h) - 0.5, 0.0), H - 1)
        ya = int(np.floor(y))
        yb, fy = min(ya + 1, H - 1), y - np.floor(y)
        for b, j in enumerate(range(-margin, w + margin)):
            x = min(max(x0 + (j + 0.5) * ((x1 - x0) / w) - 0.5, 0.0), W - 1)
            xa = int(np.floor(x))
            xb, fx = min(xa + 1, W - 1), x - np.floor(x)
            left = src[ya, xa] * (1 - fy) + src[yb, xa] * fy  # rows first, as the definition says
            right = src[ya, xb] * (1 - fy) + src[yb, xb] * fy
            out[a, b] = left * (1 - fx) + right * fx
    return out


def test_resampling_positions_kernel_equals_sample_positions():
    """extract_patch computes its sample positions in a small kernel: the values of sample_positions
    (the definition the volume path and the batched renderer use), bit for bit, for crops, up- and
    down-scaling, margins and boxes at the source's borders."""
    from nsa_augment.methods.nsa.blending import _positions, sample_positions

    rng = np.random.default_rng(3)
    for trial in range(3000):
        length = int(rng.integers(1, 600))
        b0 = int(rng.integers(0, length))
        b1 = int(rng.integers(b0 + 1, length + 1))
        n = b1 - b0 if trial % 5 == 0 else int(rng.integers(1, 700))
        margin = int(rng.integers(0, 3))
        for want, got in zip(sample_positions(b0, b1, n, margin, length), _positions(b0, b1, n, margin, length)):
            assert want.dtype == got.dtype and np.array_equal(want, got), (b0, b1, n, margin, length)


def test_patch_resampling_is_separable_linear_interpolation():
    from nsa_augment.methods.nsa.blending import extract_patch

    rng = np.random.default_rng(7)
    src = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    cases = [((5, 25, 10, 30), (13, 27), 1), ((0, 40, 0, 50), (17, 9), 0), ((30, 40, 45, 50), (20, 12), 2),
             ((3, 13, 4, 20), (10, 16), 1), ((0, 7, 43, 50), (7, 11), 1)]
    for box, size, margin in cases:
        ref = _bilinear_reference(src.astype(np.float64), box, size, margin)
        got = extract_patch(src, box, size, margin)
        assert got.dtype == np.uint8
        assert np.array_equal(got, np.clip(np.floor(ref + 0.5), 0, 255)), (box, size)
        got32 = extract_patch(src.astype(np.float32) / 255, box, size, margin)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, ref / 255, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_object_counts_direct_then_from_the_table_equal_the_mask(dims):
    """Rejection sampling counts object pixels in boxes: on the mask for the first boxes, from a summed-area
    table after that; every count equals the mask's own, and the table is built only once asked for more."""
    from nsa_augment.methods.nsa.sampling import ObjectCounts

    rng = np.random.default_rng(dims)
    shape = (40, 56) if dims == 2 else (12, 20, 24)
    mask = rng.random(shape) < 0.3
    counts = ObjectCounts(mask, direct=3)
    for k in range(12):
        lows = [int(rng.integers(0, n)) for n in shape]
        box = tuple(v for lo, n in zip(lows, shape) for v in (lo, int(rng.integers(lo + 1, n + 1))))
        assert counts(box) == int(mask[tuple(slice(box[2 * a], box[2 * a + 1]) for a in range(dims))].sum())
        assert (counts.table is None) == (k < 3)
