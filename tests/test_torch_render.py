"""The batched PyTorch renderer against the NumPy renderer, on CPU torch: same plans, same results."""

import dataclasses

import numpy as np
import pytest
import torch

from nsa_augment import NSAConfig, plan_anomaly, presets, render_anomaly
from nsa_augment.torch import NSABatchRenderer, render_batch
from nsa_augment.torch.labels import _disk_median, binary_median

from conftest import _load_rgb


def _tensor(images):
    return torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def scenes(object_scene):
    """Eight real 96 px images with different channel levels, and four object scenes."""
    tiles = _load_rgb(96, 8)
    colour = []
    for i, t in enumerate(tiles):
        t = t.astype(np.int16)
        t[..., 1] += 12 * (i % 3)
        t[..., 2] = t[..., 2] // 2 + 40
        colour.append(np.clip(t, 0, 255).astype(np.uint8))
    return colour, [object_scene[0], object_scene[1], object_scene[1][::-1].copy(), object_scene[0][:, ::-1].copy()]


def _configs():
    carpet = presets.get("mvtec/carpet")
    return {
        "carpet (mixed, 4 patches, logistic)": carpet,
        "hazelnut (object masks, logistic)": presets.get("mvtec/hazelnut"),
        "cable (binary)": presets.get("mvtec/cable"),
        "continuous": dataclasses.replace(carpet, label="continuous", gradients="normal"),
        "intensity": dataclasses.replace(carpet, label="intensity"),
        "interpolated (PII)": dataclasses.replace(carpet, gradients="interpolated"),
        "paste with object masks": dataclasses.replace(presets.get("mvtec/hazelnut"), blend="paste"),
        "alpha": dataclasses.replace(carpet, blend="alpha"),
        "same source": dataclasses.replace(carpet, same_source=True),
    }


def _render_both(images, sources, cfg, seed):
    rng = np.random.default_rng(seed)
    plans = [plan_anomaly(d, s, cfg, rng) for d, s in zip(images, sources)]
    out, labels = render_batch(_tensor(images), None if cfg.same_source else _tensor(sources), plans, cfg)
    ref = [render_anomaly(d, s, cfg, p) for d, s, p in zip(images, sources, plans)]
    assert sum(p.is_anomalous for p in plans) >= len(plans) // 2
    return plans, out.permute(0, 2, 3, 1).numpy(), labels.numpy(), ref


@pytest.mark.parametrize("name", list(_configs()))
@pytest.mark.parametrize("channels", [3, 1])
def test_uint8_batches_match_the_numpy_renderer(scenes, name, channels):
    cfg = _configs()[name]
    images = scenes[1] if cfg.object_masks is not None else scenes[0]
    images = [im[..., :channels] for im in images]
    sources = images[1:] + images[:1]
    for seed in ((0, 1) if channels == 3 else (2,)):
        _, out, labels, ref = _render_both(images, sources, cfg, seed)
        assert out.dtype == np.uint8
        for o, l, (ri, rl) in zip(out, labels, ref):
            image_diff = np.abs(o.astype(int) - ri.reshape(o.shape).astype(int))
            assert image_diff.max() <= 1, (name, seed)
            _assert_labels_agree(l, rl, image_diff.max(axis=-1) > 0, (name, seed))


def _assert_labels_agree(label, ref, image_differs, context):
    """Labels are a function of the image: identical where the two images are identical within the
    label filters' reach (5x5 median, then the radius-5 disk: 7 px); where a pixel was rounded the
    other way (1 level), the change mask or a median can move by one step nearby, so elsewhere only
    almost all pixels must agree within 0.02."""
    from scipy.ndimage import maximum_filter

    near = maximum_filter(image_differs, size=15)
    diff = np.abs(label - ref)
    assert diff[~near].max(initial=0.0) <= 1e-5, context
    assert (diff <= 0.02).mean() >= 0.99, context


@pytest.mark.parametrize("name", ["hazelnut (object masks, logistic)", "cable (binary)", "interpolated (PII)", "alpha",
                                  "intensity"])
def test_float_batches_match_the_numpy_renderer(scenes, name):
    cfg = _configs()[name]
    if name == "intensity":
        cfg = dataclasses.replace(cfg, gradients="normal")
    images = [(im / 255.0).astype(np.float32) for im in (scenes[1] if cfg.object_masks is not None else scenes[0])]
    sources = images[1:] + images[:1]
    _, out, labels, ref = _render_both(images, sources, cfg, 3)
    # Float differences (<= 0.01 level) can move a change magnitude across one bin of the disk
    # median's quantisation (1/12 level for 3 channels): intensity labels agree within one bin.
    tolerance = 1 / 12 + 1e-4 if cfg.label == "intensity" else 0.02
    for o, l, (ri, rl) in zip(out, labels, ref):
        assert np.abs(o - ri).max() * 255 <= 0.01, name
        assert np.abs(l - rl).max() <= tolerance, name


def test_float_images_with_mixed_gradients_agree_but_for_near_ties(scenes):
    """A later patch's per-edge choice between source and image gradient flips where the two nearly
    tie (float solutions differ in the 4th decimal of a level): a few isolated pixels differ more."""
    images = [(im / 255.0).astype(np.float32) for im in scenes[0]]
    _, out, labels, ref = _render_both(images, images[1:] + images[:1], presets.get("mvtec/carpet"), 0)
    err = np.concatenate([np.abs(o - ri).ravel() * 255 for o, (ri, _) in zip(out, ref)])
    label_err = np.concatenate([np.abs(l - rl).ravel() for l, (_, rl) in zip(labels, ref)])
    assert (err <= 1).mean() >= 0.999 and np.median(err[err > 0]) < 0.01
    assert (label_err <= 0.02).mean() >= 0.995


def test_reruns_are_bit_identical_and_inputs_untouched(scenes):
    images = scenes[0][:4]
    x, s = _tensor(images), _tensor(images[::-1])
    x0, s0 = x.clone(), s.clone()
    rng = np.random.default_rng(5)
    plans = [plan_anomaly(d, o, "mvtec/carpet", rng) for d, o in zip(images, images[::-1])]
    renderer = NSABatchRenderer("mvtec/carpet")
    a = renderer(x, s, plans)
    b = renderer(x, s, plans)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(x, x0) and torch.equal(s, s0)


def test_bases_built_on_the_device_match_the_host_bases():
    """On an accelerator the padded eigenbases are built there (render._bases_on_device): the same
    closed forms in float64 as box_solver's, rounded to float32, identity in the padding."""
    from nsa_augment.poisson.box_solver import eigenbasis, eigenvalues
    from nsa_augment.torch.render import eigenbases

    rng = np.random.default_rng(0)
    m = np.array([1, 2, 3, 17, 40, 64, 64, 9, 33])
    low, high = rng.random(m.size) < 0.5, rng.random(m.size) < 0.5
    low[-3:], high[-3:] = [True, False, True], [True, True, False]  # every pair of sides
    q, lam = eigenbases(torch.from_numpy(m), torch.from_numpy(low), torch.from_numpy(high), 64)
    assert q.dtype == lam.dtype == torch.float32 and q.shape == (m.size, 64, 64)
    for e, n in enumerate(m):
        sides = (int(n), bool(low[e]), bool(high[e]))
        ref_q, ref_lam = eigenbasis(*sides), eigenvalues(*sides)
        assert np.abs(q[e, :n, :n].numpy() - ref_q).max() <= 2e-7, (n, low[e], high[e])
        assert np.abs(lam[e, :n].numpy() - ref_lam.astype(np.float32)).max() <= 2e-7
        pad = q[e].numpy().copy()
        pad[:n, :n] = 0
        assert np.array_equal(pad, np.diag((np.arange(64) >= n).astype(np.float32)))
        assert (lam[e, n:] == 1).all()


def test_positions_for_all_boxes_at_once_match_sample_positions():
    from nsa_augment.methods.nsa.blending import sample_positions
    from nsa_augment.torch.render import _positions

    rng = np.random.default_rng(1)
    length = 50
    b0 = rng.integers(0, 40, 30)
    b1 = np.minimum(b0 + rng.integers(1, 30, 30), length)
    m = rng.integers(1, 45, 30)
    m[:5] = (b1 - b0)[:5]  # unresized boxes: exact copies
    b0[5], b1[5] = 0, length  # touching both ends: the margin is clamped
    i0, i1, w = _positions(b0, b1, m, 45, length)
    for e in range(30):
        r0, r1, rw = sample_positions(int(b0[e]), int(b1[e]), int(m[e]), 1, length)
        n = int(m[e]) + 2
        assert np.array_equal(i0[e, :n], r0) and np.array_equal(i1[e, :n], r1) and np.array_equal(w[e, :n], rw)
        assert not i0[e, n:].any() and not i1[e, n:].any() and not w[e, n:].any()


def test_staged_arrays_arrive_with_their_dtypes_and_values():
    from nsa_augment.torch.render import upload

    rng = np.random.default_rng(2)
    arrays = {"idx": (rng.integers(0, 2**40, (3, 5)), torch.int64), "w": (rng.random(7), torch.float64),
              "m": (rng.random((2, 2)) < 0.5, torch.bool), "q": (rng.random((4, 3)).astype(np.float32), torch.float32),
              "k": (np.arange(4), torch.int64)}
    out = upload(arrays, torch.device("cpu"))
    for name, (a, dtype) in arrays.items():
        assert out[name].dtype == dtype and np.array_equal(out[name].numpy(), a), name
    with pytest.raises(TypeError, match="float16"):
        upload({"h": (np.zeros(2), torch.float16)}, torch.device("cpu"))


def test_rendering_with_bases_built_on_the_device(scenes, monkeypatch):
    """The accelerator's path (bases from each box's size and sides, built where they are used) on
    CPU torch: the same images and labels as the host path."""
    from nsa_augment.torch import render

    images = scenes[0][:6]
    sources = images[1:] + images[:1]
    rng = np.random.default_rng(4)
    carpet = presets.get("mvtec/carpet")
    for cfg in (carpet, dataclasses.replace(carpet, gradients="interpolated")):
        plans = [plan_anomaly(d, o, cfg, rng) for d, o in zip(images, sources)]
        host = render_batch(_tensor(images), _tensor(sources), plans, cfg)
        monkeypatch.setattr(render, "_bases_on_device", lambda device: True)
        device = render_batch(_tensor(images), _tensor(sources), plans, cfg)
        monkeypatch.undo()
        assert (host[0].int() - device[0].int()).abs().max() <= 1
        assert (host[1] - device[1]).abs().max() <= 0.02


def test_examples_without_patches_come_back_unchanged(scenes):
    images = scenes[0][:3]
    cfg = dataclasses.replace(presets.get("mvtec/carpet"), num_patches=1)
    rng = np.random.default_rng(0)
    plans = [plan_anomaly(d, d, cfg, rng) for d in images]
    plans[1] = dataclasses.replace(plans[1], patches=(), skipped=("none",))
    out, labels = render_batch(_tensor(images), _tensor(images), plans, cfg)
    assert torch.equal(out[1], _tensor(images)[1]) and not labels[1].any()
    assert labels[0].any() and labels[2].any()


def test_label_kernels_match_their_definitions():
    import cv2
    import scipy.ndimage as ndi
    from skimage.morphology import disk

    rng = np.random.default_rng(1)
    mask = rng.random((2, 40, 37)) < 0.5
    got = binary_median(torch.from_numpy(mask), 5).numpy()
    for m, g in zip(mask, got):
        assert np.array_equal(g, cv2.medianBlur(m.astype(np.uint8), 5) > 0)
    values = rng.integers(0, 60, (2, 40, 37)).astype(np.float32)
    need = rng.random((2, 40, 37)) < 0.3
    got = _disk_median(torch.from_numpy(values), torch.from_numpy(need)).numpy()
    for v, n, g in zip(values, need, got):
        ref = ndi.median_filter(v, footprint=disk(5), mode="nearest")
        assert np.array_equal(g[n], ref[n]) and not g[~n].any()


def test_bad_calls_are_one_line_errors(scenes):
    images = scenes[0][:2]
    x = _tensor(images)
    rng = np.random.default_rng(0)
    plans = [plan_anomaly(d, d, "mvtec/carpet", rng) for d in images]
    with pytest.raises(ValueError, match="one plan per image"):
        render_batch(x, x, plans[:1], "mvtec/carpet")
    with pytest.raises(TypeError, match="uint8 or float32"):
        render_batch(x.to(torch.int16), x.to(torch.int16), plans, "mvtec/carpet")
    with pytest.raises(ValueError, match="drawn for a 96x96 image"):
        render_batch(x[:, :, :64, :64], x[:, :, :64, :64], plans, "mvtec/carpet")
    with pytest.raises(ValueError, match="opencv"):
        render_batch(x, x, plans, dataclasses.replace(presets.get("mvtec/carpet"), poisson="opencv"))
    with pytest.raises(ValueError, match="volumes"):
        render_batch(x, x, plans, presets.get("medical/brain-mri"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render_batch(x.float(), x.float(), plans, "mvtec/carpet")
    with pytest.raises(TypeError, match="NSAConfig"):
        NSABatchRenderer(NSAConfig)
