"""The peer methods under the same interface: labels consistent with the change, seeds, shapes, bad input."""

import copy

import albumentations as A
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from conftest import levels_as
from nsa_augment import methods, presets
from nsa_augment.methods import cutpaste, cutpaste_scar, draem_anomaly, perlin_noise
from nsa_augment.transforms import CutPaste, CutPasteScar, DraemAnomaly, transform_for

ALL = methods.METHODS


def _changed(before, after):
    d = np.abs(before.astype(np.float64) - after.astype(np.float64))
    return d.reshape(d.shape[0], d.shape[1], -1).max(axis=2) > 0


@pytest.mark.parametrize("method", ALL)
def test_label_consistent_with_change(method, tiles128):
    gen = methods.generator(method, "mvtec/carpet")
    rng = np.random.default_rng(0)
    anomalous = 0
    for i in range(25):
        dst, src = tiles128[i % 4], tiles128[(i + 1) % 4]
        image, label, info = gen(dst, src, rng)
        assert image.shape == dst.shape and image.dtype == dst.dtype
        assert label.shape == dst.shape[:2] and label.dtype == np.float32 and label.min() >= 0
        changed = _changed(dst, image)
        if method in methods.NSA_FAMILY:
            # NSA-family labels follow the 5x5-median change rule; nothing changes outside the patch boxes
            boxes = np.zeros(dst.shape[:2], bool)
            for p in info.patches:
                y0, y1, x0, x1 = p.dst_box
                boxes[y0:y1, x0:x1] = True
            assert not changed[~boxes].any()
        else:
            # paste methods: every changed pixel is labelled, nothing outside the label changes
            assert not changed[label == 0].any()
            assert set(np.unique(label)) <= {0.0, 1.0}
        anomalous += label.max() > 0
    assert anomalous >= 20


@pytest.mark.parametrize("method", ALL)
def test_seeds_reproduce_and_differ(method, tiles128):
    gen = methods.generator(method, "mvtec/carpet")
    a = gen(tiles128[0], tiles128[1], np.random.default_rng(5))
    b = gen(tiles128[0], tiles128[1], np.random.default_rng(5))
    c = gen(tiles128[0], tiles128[1], np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("shape", [(40, 52), (40, 52, 1), (40, 52, 3), (40, 52, 5)])
def test_shapes_and_dtypes(method, shape):
    rng = np.random.default_rng(1)
    dst = rng.integers(30, 220, shape).astype(np.uint8)
    src = rng.integers(30, 220, shape).astype(np.uint8)
    gen = methods.generator(method, "mvtec/cable")
    for d, s in ((dst, src), (dst.astype(np.float32) / 255, src.astype(np.float32) / 255)):
        before = d.copy()
        image, label, _ = gen(d, s, rng)
        assert image.shape == d.shape and image.dtype == d.dtype and label.shape == shape[:2]
        assert np.array_equal(d, before)
        if d.dtype == np.float32:
            assert image.min() >= 0 and image.max() <= 1


@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from([m for m in ALL if m not in methods.NSA_FAMILY]),  # the NSA family: test_synthesis
    preset=st.sampled_from(sorted(n for n in presets.names() if presets.get(n).dims == 2)),
    size=st.tuples(st.integers(2, 120), st.integers(2, 120)),
    source_size=st.one_of(st.none(), st.tuples(st.integers(2, 120), st.integers(2, 120))),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
    seed=st.integers(0, 2**31),
)
def test_peers_take_any_size_dtype_and_channels(method, preset, size, source_size, channels, dtype, seed):
    """Every peer on any preset, size (down to 2 px, a source of another size), channel count and dtype: no
    error, the caller's arrays untouched, nothing changed outside the label, and a plan renders the same twice."""
    m = methods.get(method)
    cfg = m.config(preset)
    if dtype == np.int16 and getattr(cfg, "intensity_range", "") is None:
        cfg = cfg.replace(intensity_range="image")
    rng = np.random.default_rng(seed)
    shape = (lambda hw: hw) if channels is None else (lambda hw: hw + (channels,))
    dst = levels_as(rng.integers(30, 221, shape(size)), dtype)
    src = levels_as(rng.integers(30, 221, shape(source_size or size)), dtype) if m.uses_source else None
    before = dst.copy(), None if src is None else src.copy()
    plan = m.plan(dst, src, cfg, np.random.default_rng(seed + 1))
    image, label = m.render(dst, src, cfg, plan)[:2]
    assert np.array_equal(dst, before[0]) and (src is None or np.array_equal(src, before[1]))
    assert image.shape == dst.shape and image.dtype == dst.dtype
    assert label.shape == size and label.dtype == np.float32 and np.isfinite(label).all()
    assert label.min() >= 0 and label.max() <= 1
    if dtype == np.float32:
        assert np.isfinite(image).all()
    assert not _changed(dst, image)[label == 0].any(), "a change outside the label"
    again = m.render(dst, src, cfg, plan)[:2]
    assert np.array_equal(again[0], image) and np.array_equal(again[1], label)


@pytest.mark.parametrize("method", ALL)
def test_bad_input(method):
    gen = methods.generator(method)
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="uint8, uint16, int16 or float32"):
        gen(np.zeros((32, 32, 3), np.float64), None, rng)
    with pytest.raises(ValueError, match="at least 2x2"):
        gen(np.zeros((1, 1), np.uint8), None, rng)
    with pytest.raises(ValueError, match=r"\[0, 1\] unless told otherwise"):
        gen(np.full((32, 32), 2.0, np.float32), None, rng)
    with pytest.raises(TypeError, match="Generator"):
        gen(np.zeros((32, 32), np.uint8), None, 3)


def test_unknown_method():
    with pytest.raises(ValueError, match="known methods: nsa, "):
        methods.generator("cutmix")


def test_cutpaste_geometry_distribution():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    areas, aspects = [], []
    ranges = methods.CutPasteConfig().aspect_ratio
    for _ in range(1500):
        replay = copy.deepcopy(rng)  # the plan's first draws: area, coin, aspect
        replay.uniform()
        aspects.append(replay.uniform(*ranges[int(replay.integers(2))]))
        _, label, plan = cutpaste(img, rng, jitter=0.0)
        y0, y1, x0, x1 = plan.dst_box
        areas.append((y1 - y0) * (x1 - x0) / 200**2)
        assert label.sum() == (y1 - y0) * (x1 - x0)
        assert plan.src_box[1] - plan.src_box[0] == y1 - y0 and plan.src_box[3] - plan.src_box[2] == x1 - x0
    areas = np.array(areas)
    assert areas.min() > 0.015 and areas.max() < 0.16
    # coin flip between U(0.3, 1) and U(1, 3.3)
    aspects = np.array(aspects)
    assert 0.45 < np.mean(aspects < 1) < 0.55
    assert stats.kstest(aspects[aspects < 1], "uniform", args=(0.3, 0.7)).pvalue > 1e-3


def test_cutpaste_jitter_changes_the_patch():
    img = np.random.default_rng(1).integers(40, 200, (100, 100, 3), dtype=np.uint8)
    out, label, plan = cutpaste(img, np.random.default_rng(3), jitter=0.1)
    (sy0, sy1, sx0, sx1), (dy0, dy1, dx0, dx1) = plan.src_box, plan.dst_box
    pasted = out[dy0:dy1, dx0:dx1].astype(float)
    assert not np.array_equal(pasted, img[sy0:sy1, sx0:sx1])
    assert np.abs(pasted - img[sy0:sy1, sx0:sx1]).mean() < 40  # jitter is mild
    assert set(plan.jitter.order) == {"brightness", "contrast", "saturation", "hue"}
    assert all(abs(f - (0.0 if name == "hue" else 1.0)) <= 0.1 for name, f in zip(plan.jitter.order, plan.jitter.factors))


def test_scar_geometry():
    img = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(200):
        _, label, plan = cutpaste_scar(img, rng)
        y0, y1, x0, x1 = plan.src_box
        assert 2 <= x1 - x0 <= 16 and 10 <= y1 - y0 <= 25
        assert -45 <= plan.angle <= 45
        # the footprint of a w x h rectangle, rotated: area about w * h
        assert abs(label.sum() - (x1 - x0) * (y1 - y0)) <= 0.35 * (x1 - x0) * (y1 - y0) + 6


def test_fpi_and_pii_labels_are_the_factor():
    rng = np.random.default_rng(0)
    a = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    b = np.random.default_rng(2).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for method in ("fpi", "pii"):
        cfg = methods.nsa_config(method, "mvtec/carpet")
        assert cfg.label == "continuous" and not cfg.shift and not cfg.rescale and cfg.num_patches == 1
        factors = []
        for _ in range(30):
            image, label, info = methods.generator(method)(a, b, rng)
            p = info.patches[0]
            assert p.src_box == p.dst_box  # in place
            assert set(np.unique(label)) <= {0.0, np.float32(info.factor)}
            factors.append(info.factor)
        assert 0.05 <= min(factors) and max(factors) <= 0.95


def test_fpi_is_an_alpha_blend():
    a = np.full((64, 64, 3), 200, np.uint8)
    b = np.full((64, 64, 3), 100, np.uint8)
    image, label, info = methods.generator("fpi")(a, b, np.random.default_rng(4))
    y0, y1, x0, x1 = info.patches[0].dst_box
    expected = np.rint(info.factor * 100 + (1 - info.factor) * 200)
    assert np.all(image[y0:y1, x0:x1] == expected)


def test_cutpaste_nsa_is_hard_paste_from_the_same_image(tiles128):
    cfg = methods.nsa_config("cutpaste-nsa", "mvtec/bottle")
    assert cfg.blend == "paste" and cfg.same_source and cfg.label == "binary" and cfg.object_masks is None


def test_perlin_matches_a_plain_loop():
    rng_state = np.random.default_rng(3)
    noise = perlin_noise((20, 30), (4, 5), rng_state)
    angles = np.random.default_rng(3).uniform(0, 2 * np.pi, size=(5, 6))
    fade = lambda t: 6 * t**5 - 15 * t**4 + 10 * t**3  # noqa: E731
    for y in range(20):
        for x in range(30):
            py, px = (y + 0.5) * 4 / 20, (x + 0.5) * 5 / 30
            iy, ix = int(py), int(px)
            fy, fx = py - iy, px - ix
            dots = {}
            for dy in (0, 1):
                for dx in (0, 1):
                    a = angles[iy + dy, ix + dx]
                    dots[dy, dx] = np.sin(a) * (fy - dy) + np.cos(a) * (fx - dx)
            top = dots[0, 0] + fade(fx) * (dots[0, 1] - dots[0, 0])
            bottom = dots[1, 0] + fade(fx) * (dots[1, 1] - dots[1, 0])
            assert noise[y, x] == pytest.approx(np.sqrt(2) * (top + fade(fy) * (bottom - top)), abs=1e-6)


def test_draem_mask_and_opacity(tiles128):
    rng = np.random.default_rng(0)
    texture = np.random.default_rng(9).integers(0, 256, (300, 200, 3), dtype=np.uint8)  # any size
    fractions, betas = [], []
    for _ in range(40):
        image, label, plan = draem_anomaly(tiles128[0], texture, rng)
        assert set(np.unique(label)) <= {0.0, 1.0}
        assert np.array_equal(image[label == 0], tiles128[0][label == 0])
        betas.append(plan.beta)
        fractions.append(label.mean())
        assert 1 <= plan.cells[0] <= 32 and len(plan.augment) == 3
    assert 0 <= min(betas) and max(betas) <= 0.8
    assert np.mean(np.array(fractions) > 0) > 0.5  # most examples carry an anomaly, as in DRAEM


@pytest.mark.parametrize("cls", [CutPaste, CutPasteScar, DraemAnomaly])
def test_baseline_transforms(cls, tiles128, tmp_path):
    image = tiles128[0]
    pipeline = A.Compose([cls(p=1.0), A.HorizontalFlip(p=0.5)], seed=0)
    out = pipeline(image=image, mask=np.zeros(image.shape[:2], np.float32), nsa_source=tiles128[1])
    assert out["image"].shape == image.shape and out["mask"].dtype == np.float32
    batch = pipeline(images=np.stack([image] * 3), masks=np.zeros((3,) + image.shape[:2], np.float32))
    assert batch["masks"].shape == (3,) + image.shape[:2]
    path = tmp_path / "p.json"
    A.save(pipeline, str(path))
    restored = A.load(str(path))
    for p in (pipeline, restored):
        p.set_random_seed(3)
    x = pipeline(image=image, mask=np.zeros(image.shape[:2], np.float32), nsa_source=tiles128[1])
    y = restored(image=image, mask=np.zeros(image.shape[:2], np.float32), nsa_source=tiles128[1])
    assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["mask"], y["mask"])


@pytest.mark.parametrize("method", ALL)
def test_method_transform_factory(method, tiles128):
    t = transform_for(method, "mvtec/carpet", p=1.0)
    out = A.Compose([t], seed=1)(image=tiles128[0], mask=np.zeros((128, 128), np.float32), nsa_source=tiles128[1])
    assert out["mask"].shape == (128, 128)


@pytest.mark.parametrize("cls, kwargs, match", [
    (CutPaste, {"area_ratio": (0.3, 0.1)}, "area_ratio"),
    (CutPasteScar, {"width": (0, 3)}, "width"),
    (DraemAnomaly, {"beta_range": (0.5, 1.5)}, "beta_range"),
])
def test_baseline_transform_validation(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# --- the plan protocol (issue: plan + render) ----------------------------------------------------------


@pytest.mark.parametrize("method", ALL)
def test_plan_is_plain_data_and_render_is_pure(method, tiles128):
    import json

    m = methods.get(method)
    cfg = m.config("mvtec/carpet")
    dst, src = tiles128[0], tiles128[1]
    plan = m.plan(dst, src, cfg, np.random.default_rng(3))
    restored = methods.plan_from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan and plan.shape == (128, 128)
    first = m.render(dst, src, cfg, plan)
    again = m.render(dst, src, cfg, restored)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # the generator is plan + render with the same draws
    image, label, same_plan = m.generator("mvtec/carpet")(dst, src, np.random.default_rng(3))
    assert same_plan == plan and np.array_equal(image, first[0]) and np.array_equal(label, first[1])
    # the same plan on another image of the same size renders that image
    other = m.render(tiles128[2], src, cfg, plan)[0]
    assert other.shape == dst.shape and not np.array_equal(other, first[0])


@pytest.mark.parametrize("method", ALL)
def test_rendering_a_plan_on_another_size_is_a_value_error(method, tiles128):
    m = methods.get(method)
    cfg = m.config("mvtec/carpet")
    plan = m.plan(tiles128[0], tiles128[1], cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="drawn for a 128x128"):
        m.render(tiles128[0][:100, :90], tiles128[1], cfg, plan)


def test_nsa_plan_for_another_source_size_is_a_value_error(tiles128):
    from nsa_augment import plan_anomaly, render_anomaly

    big, small = tiles128[0], tiles128[1][:64, :64].copy()
    plan = plan_anomaly(small, big, "mvtec/carpet", np.random.default_rng(0))
    with pytest.raises(ValueError, match="drawn for a 128x128 source, got 64x64"):
        render_anomaly(small, small, "mvtec/carpet", plan)
    plan = plan_anomaly(big, big[::-1].copy(), "mvtec/carpet", np.random.default_rng(0))
    with pytest.raises(ValueError, match="drawn for a 128x128 destination, got 64x64"):
        render_anomaly(small, small, "mvtec/carpet", plan)


@pytest.mark.parametrize("call, match", [
    (lambda img, rng: cutpaste(img, rng, area_ratio=(0.5, 3.0)), "area_ratio must satisfy 0 < lo <= hi <= 1"),
    (lambda img, rng: cutpaste(img, rng, aspect_ratio=((0.3, 1.0),)), "aspect_ratio"),
    (lambda img, rng: cutpaste(img, rng, jitter=2), "jitter"),
    (lambda img, rng: cutpaste_scar(img, rng, width=(5, 2)), "width"),
    (lambda img, rng: cutpaste_scar(img, rng, height=(1.5, 3)), "height"),
    (lambda img, rng: draem_anomaly(img, None, rng, scale_exponents=(3, 3)), "scale_exponents"),
    (lambda img, rng: draem_anomaly(img, None, rng, threshold=5), "noise range"),
    (lambda img, rng: draem_anomaly(img, None, rng, augmenters=11), "augmenters"),
])
def test_direct_calls_are_validated_like_transforms(call, match):
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=match):
        call(img, np.random.default_rng(0))


def test_direct_call_with_a_misspelled_field():
    with pytest.raises(TypeError, match="did you mean 'area_ratio'"):
        cutpaste(np.zeros((32, 32), np.uint8), np.random.default_rng(0), area_ration=(0.1, 0.2))
