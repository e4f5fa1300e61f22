"""NSA in 3-D: the 7-point Poisson solver against a sparse solve, volume sampling, 3-D labels, real brain MRI."""

import json
import os

import numpy as np
import pytest
from scipy import ndimage

from nsa_augment import (
    NSAConfig,
    plan_from_dict,
    plan_volume_anomaly,
    poisson_blend_volume,
    poisson_blend_volume_reference,
    presets,
    render_volume_anomaly,
    synthesize,
    synthesize_volume,
)
from nsa_augment.io import load_volume
from nsa_augment.methods.nsa.labels import footprint, make_label, median_keeps
from nsa_augment.methods.nsa.objects import spatial_object_mask

nibabel_testing = pytest.importorskip("nibabel.testing")
BRAIN = os.path.join(nibabel_testing.data_path, "example4d.nii.gz")


@pytest.fixture(scope="module")
def brain():
    """A real 24x96x128 int16 brain MRI (nibabel's test data), and its second frame as a source."""
    return load_volume(BRAIN, frame=0), load_volume(BRAIN, frame=1)


def _mask_zoo(shape):
    zz, yy, xx = np.indices(shape)
    c = [(n - 1) / 2 for n in shape]
    r2 = sum(((g - ci) / (0.45 * n)) ** 2 for g, ci, n in zip((zz, yy, xx), c, shape))
    return {
        "box": np.ones(shape, bool),
        "ellipsoid": r2 < 1,
        "shell": (r2 < 1) & (r2 > 0.35),
        "two-blobs": (((zz - 2) ** 2 + (yy - 3) ** 2 + (xx - 3) ** 2) < 6) | (((zz - 7) ** 2 + (yy - 8) ** 2 + (xx - 10) ** 2) < 8),
    }


@pytest.mark.parametrize("gradients", ["normal", "mixed", "interpolated"])
@pytest.mark.parametrize("shape_name", ["box", "ellipsoid", "shell", "two-blobs"])
@pytest.mark.parametrize("offset", [(4, 5, 6), (0, 0, 0), (10, 12, 14)])
def test_poisson_3d_matches_the_sparse_reference(gradients, shape_name, offset):
    rng = np.random.default_rng(1)
    dst = rng.integers(0, 256, (20, 24, 28, 2)).astype(np.uint8)
    src = rng.integers(0, 256, (10, 12, 14, 2)).astype(np.uint8)
    mask = _mask_zoo((10, 12, 14))[shape_name]
    ref = poisson_blend_volume_reference(dst, src, mask, offset=offset, gradients=gradients, factor=0.3)
    ours_f = poisson_blend_volume(dst.astype(np.float32), src.astype(np.float32), mask, offset=offset,
                                  gradients=gradients, factor=0.3)
    assert np.abs(ours_f - ref).max() < 0.01
    ours = poisson_blend_volume(dst, src, mask, offset=offset, gradients=gradients, factor=0.3)
    assert ours.dtype == np.uint8 and np.abs(ours - np.clip(ref, 0, 255)).max() <= 0.5 + 1e-6
    outside = np.ones(dst.shape[:3], bool)
    outside[tuple(slice(o, o + n) for o, n in zip(offset, mask.shape))] = ~mask
    assert np.array_equal(ours[outside], dst[outside])


def test_poisson_3d_errors():
    dst = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        poisson_blend_volume(dst, np.zeros((4, 4, 4), np.uint8), np.ones((4, 4, 4), bool), offset=(6, 0, 0))
    with pytest.raises(ValueError, match="volume of shape"):
        poisson_blend_volume(np.zeros((8, 8), np.uint8), dst, np.ones((8, 8, 8), bool))
    with pytest.raises(ValueError, match="whole destination"):
        poisson_blend_volume(dst, dst, np.ones((8, 8, 8), bool))
    with pytest.raises(TypeError, match="must match"):
        poisson_blend_volume(dst, dst.astype(np.uint16), np.ones((8, 8, 8), bool))


def test_brain_volume_gets_3d_anomalies_with_aligned_labels(brain):
    a, b = brain
    anomalous = 0
    for seed in range(8):
        volume, label, plan = synthesize_volume(a, b, "medical/brain-mri", np.random.default_rng(seed))
        assert volume.dtype == np.int16 and volume.shape == a.shape and label.shape == a.shape
        boxes = np.zeros(a.shape, bool)
        for p in plan.patches:
            z0, z1, y0, y1, x0, x1 = p.dst_box
            boxes[z0:z1, y0:y1, x0:x1] = True
        changed = volume != a
        assert not changed[~boxes].any()  # nothing changes outside the cuboids
        # the label is zero wherever no voxel of its 5x5x5 neighbourhood changed by more than tol
        lo, hi = float(a.min()), float(a.max())
        big = np.abs(volume.astype(float) - a) * 255 / (hi - lo) > 1.0
        near = ndimage.maximum_filter(big, size=5, mode="nearest")
        assert not (label[~near] > 0).any()
        anomalous += label.max() > 0
    assert anomalous >= 6


def test_volume_labels_equal_the_whole_volume_definition():
    """3-D labels on the grown bounding box equal the definition applied to the whole volume."""
    rng = np.random.default_rng(2)
    before = rng.integers(0, 256, (18, 30, 26, 1)).astype(np.uint8)
    after = before.copy()
    after[5:12, 8:20, 6:15] = np.clip(after[5:12, 8:20, 6:15].astype(int) + rng.integers(-40, 60, (7, 12, 9, 1)), 0, 255)
    region = np.zeros(before.shape[:3], bool)
    region[5:12, 8:20, 6:15] = True
    d = np.abs(before.astype(float) - after).mean(axis=3)
    changed = ndimage.median_filter(((d > 1) & region).astype(np.uint8), size=5, mode="nearest")
    ball = np.zeros((11, 11, 11), bool)
    for dz, dy, hw in footprint(5, 3):
        ball[dz + 5, dy + 5, 5 - hw : 5 + hw + 1] = True
    intensity = ndimage.median_filter(d * changed, footprint=ball, mode="nearest")
    assert np.array_equal(make_label(before, after, region, "binary"), changed.astype(np.float32))
    assert np.allclose(make_label(before, after, region, "intensity"), intensity)
    k, x0 = 1 / 3, 7
    logistic = changed / (1 + np.exp(-k * (intensity - x0)))
    assert np.abs(make_label(before, after, region, "logistic", logistic=(k, x0)) - logistic).max() < 1e-6
    assert np.array_equal(make_label(before, after, region, "continuous", factor=0.4), (changed * 0.4).astype(np.float32))


def test_volume_object_masks_on_a_box_equal_the_whole_mask(brain):
    a, _ = brain
    vol = a[..., None]
    whole = spatial_object_mask(vol, [(0, 20)], intensity=(0.0, 1162.0))
    box = (3, 15, 10, 70, 0, 50)
    part = spatial_object_mask(vol, [(0, 20)], box=box, intensity=(0.0, 1162.0))
    assert np.array_equal(part, whole[3:15, 10:70, 0:50]) and whole.any() and not whole.all()


def test_volume_sampling_uses_each_axis_bounds():
    cfg = NSAConfig(width_bounds=((0.05, 0.1), (0.2, 0.3), (0.3, 0.4)), rescale=False, num_patches=1)
    vol = np.zeros((40, 50, 60), np.uint8)
    for seed in range(30):
        plan = plan_volume_anomaly(vol, vol[::-1].copy(), cfg, np.random.default_rng(seed))
        d, h, w = plan.patches[0].dst_size
        assert 2 * 2 <= d <= 2 * 4 and 2 * 10 <= h <= 2 * 15 and 2 * 18 <= w <= 2 * 24


def test_volume_plans_replay_and_serialise(brain):
    a, b = brain
    first = synthesize_volume(a, b, "medical/brain-mri", np.random.default_rng(5))
    again = synthesize_volume(a, b, "medical/brain-mri", np.random.default_rng(5))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    plan = plan_volume_anomaly(a, b, "medical/brain-mri", np.random.default_rng(5))
    restored = plan_from_dict(json.loads(json.dumps(plan.to_dict())))
    volume, label = render_volume_anomaly(a, b, "medical/brain-mri", restored)
    assert np.array_equal(volume, first[0]) and np.array_equal(label, first[1])
    with pytest.raises(ValueError, match="drawn for a 24x96x128 destination, got 24x96x64"):
        render_volume_anomaly(np.ascontiguousarray(a[:, :, :64]), b, "medical/brain-mri", plan)


def test_volumes_are_never_mistaken_for_images(brain):
    a, b = brain
    with pytest.raises(ValueError, match=r"or a \(D, H, W\) volume\? For volumes use synthesize_volume"):
        synthesize(a, b, "mvtec/carpet", np.random.default_rng(0))
    with pytest.raises(ValueError, match="3 axes .* use synthesize_volume"):
        synthesize(a[0], b[0], "medical/brain-mri", np.random.default_rng(0))
    with pytest.raises(ValueError, match="volumes need width_bounds for 3 axes"):
        synthesize_volume(a, b, "medical/ct", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"volume of shape \(D, H, W\)"):
        synthesize_volume(a[0], b[0], "medical/brain-mri", np.random.default_rng(0))
    with pytest.raises(ValueError, match="channels"):
        synthesize_volume(a[..., None], np.repeat(b[..., None], 2, axis=3), "medical/brain-mri", np.random.default_rng(0))
    with pytest.raises(TypeError, match="must match"):
        synthesize_volume(a, b.astype(np.float32), "medical/brain-mri", np.random.default_rng(0))
    with pytest.raises(ValueError, match="poisson='opencv'.* 2-D"):
        synthesize_volume(a, b, presets.get("medical/brain-mri").replace(poisson="opencv"), np.random.default_rng(0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("label", ["binary", "intensity"])
def test_volume_dtypes_channels_and_labels(dtype, label):
    rng = np.random.default_rng(3)
    base = rng.integers(30, 220, (16, 24, 28, 2))
    cast = (lambda v: (v / 255).astype(np.float32)) if dtype == np.float32 else (lambda v: v.astype(dtype))
    dst, src = cast(base), cast(np.roll(base, 5, axis=2))
    cfg = presets.get("medical/brain-mri").replace(object_masks=None, label=label, gamma=None,
                                                    width_bounds=((0.2, 0.4),) * 3)
    before = dst.copy()
    labelled = 0
    for _ in range(4):
        volume, lab, plan = synthesize_volume(dst, src, cfg, rng)
        assert volume.dtype == dtype and volume.shape == dst.shape and np.array_equal(dst, before)
        assert lab.shape == dst.shape[:3] and (lab.max() == 0 or plan.patches)
        labelled += lab.max() > 0
    assert labelled >= 3


def test_no_patch_changes_voxels_its_label_cannot_mark(brain):
    """A cuboid too thin to fill half of the 5x5x5 label median would be blended unlabelled: it is skipped instead."""
    a, b = brain
    thin_seen = 0
    for seed in range(12):
        volume, label, plan = synthesize_volume(a, b, "medical/brain-mri", np.random.default_rng(seed))
        assert all(median_keeps(p.dst_size) for p in plan.patches)
        thin_seen += any("too small for the label's 5x5x5 median" in r for r in plan.skipped)
        if plan.patches:
            assert label.max() > 0, plan
    assert thin_seen > 0
