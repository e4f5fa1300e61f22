"""NaturalSyntheticAnomaly as an Albumentations transform: upstream's generic invariants, and ours.

Runs on albumentations 2.0.8 (the main CI job) and on AlbumentationsX (the second CI job).
"""

import multiprocessing as mp
import pickle

import albumentations as A
import numpy as np
import pytest

from nsa_augment import NaturalSyntheticAnomaly, NSAConfig, image_label, presets, synthesize
from nsa_augment.transforms import IS_ALBUMENTATIONS_X, SERIALIZATION_NAME, CutPaste, DraemAnomaly


def _images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(40, 220, shape).astype(np.uint8)
    b = rng.integers(40, 220, shape).astype(np.uint8)
    if dtype == np.float32:
        return a.astype(np.float32) / 255, b.astype(np.float32) / 255
    return a, b


def _call(pipeline, image, source, **extra):
    return pipeline(image=image, mask=np.zeros(image.shape[:2], np.float32), nsa_source=source, **extra)


@pytest.mark.parametrize("shape", [(48, 56), (48, 56, 1), (48, 56, 3), (48, 56, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dtype_and_shape_preserved_and_inputs_untouched(shape, dtype):
    image, source = _images(shape, dtype)
    before, src_before = image.copy(), source.copy()
    mask = np.zeros(shape[:2], np.float32)
    t = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)], seed=1)
    out = t(image=image, mask=mask, nsa_source=source)
    assert out["image"].shape == shape and out["image"].dtype == dtype
    assert out["mask"].shape == shape[:2] and out["mask"].dtype == np.float32
    assert not np.array_equal(out["image"], image) and out["mask"].max() > 0  # p=1: the image changes
    assert np.array_equal(image, before) and np.array_equal(source, src_before) and not mask.any()


def test_uint8_and_float32_agree_for_same_seed():
    image, source = _images((64, 64, 3), np.uint8)
    t = NaturalSyntheticAnomaly.from_preset("mvtec/cable", p=1.0)  # normal gradients: no discontinuous choices
    a = _call(A.Compose([t], seed=3), image, source)
    b = _call(A.Compose([t], seed=3), image.astype(np.float32) / 255, source.astype(np.float32) / 255)
    assert np.abs(a["image"].astype(np.float32) - b["image"] * 255).max() <= 2.0
    assert np.abs(a["mask"] - b["mask"]).mean() < 0.02


def test_contiguous_output_for_non_contiguous_input():
    image, source = _images((64, 128, 3), np.uint8)
    view = image[:, ::2]  # non-contiguous
    out = _call(A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)], seed=0), view, source)
    assert out["image"].flags.c_contiguous and out["mask"].flags.c_contiguous


def test_mask_untouched_when_not_applied_and_max_combined_when_applied():
    image, source = _images((64, 64, 3), np.uint8)
    prior = np.zeros((64, 64), np.float32)
    prior[:4, :4] = 1.0
    out = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=0.0)])(image=image, mask=prior, nsa_source=source)
    assert out["mask"] is prior or np.array_equal(out["mask"], prior)
    assert np.array_equal(out["image"], image)
    out = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)], seed=0)(image=image, mask=prior, nsa_source=source)
    assert (out["mask"][:4, :4] == 1.0).all() and out["mask"].max() >= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.bool_])
@pytest.mark.parametrize("channels", [None, 2])
def test_label_is_max_combined_into_any_mask_as_float32(dtype, channels):
    from nsa_augment.transforms import _combine

    rng = np.random.default_rng(0)
    shape = (6, 7) if channels is None else (6, 7, channels)
    mask = (rng.random(shape) * 2).astype(dtype)
    before = mask.copy()
    label = rng.random((6, 7)).astype(np.float32)
    got = _combine(mask, label)
    expected = np.maximum(mask.astype(np.float32), label if channels is None else label[..., None])
    assert got.dtype == np.float32 and got.shape == shape and np.array_equal(got, expected)
    assert np.array_equal(mask, before)


def test_label_follows_later_geometric_transforms():
    image, source = _images((64, 64, 3), np.uint8)
    nsa = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    plain = _call(A.Compose([nsa], seed=5), image, source)
    flipped = _call(A.Compose([nsa, A.HorizontalFlip(p=1.0)], seed=5), image, source)
    assert np.array_equal(flipped["image"], plain["image"][:, ::-1])
    assert np.array_equal(flipped["mask"], plain["mask"][:, ::-1])


def test_bboxes_and_keypoints_pass_through():
    image, source = _images((64, 64, 3), np.uint8)
    pipeline = A.Compose(
        [NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)],
        bbox_params=A.BboxParams("pascal_voc", label_fields=["labels"]),
        keypoint_params=A.KeypointParams("xy"),
        seed=0,
    )
    out = _call(pipeline, image, source, bboxes=[(5, 6, 30, 40)], labels=[1], keypoints=[(10, 12), (50, 3)])
    assert np.allclose(np.asarray(out["bboxes"]), [(5, 6, 30, 40)])
    assert np.allclose(np.asarray(out["keypoints"]), [(10, 12), (50, 3)])


def test_images_batch_gets_independent_anomalies():
    image, source = _images((64, 64, 3), np.uint8)
    images = np.stack([image] * 4)
    pipeline = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)], seed=0)
    out = pipeline(images=images, masks=np.zeros((4, 64, 64), np.float32), nsa_source=source)
    assert out["images"].shape == images.shape and out["masks"].shape == (4, 64, 64)
    labels = out["masks"]
    assert all(lab.max() > 0 for lab in labels)
    assert not any(np.array_equal(labels[0], labels[i]) for i in range(1, 4))  # per-item, not images[0]'s blend
    assert not any(np.array_equal(out["images"][0], out["images"][i]) for i in range(1, 4))


def test_volume_rejected_clearly():
    image, source = _images((64, 64, 3), np.uint8)
    pipeline = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)])
    with pytest.raises(ValueError, match="does not support volumes"):
        pipeline(volume=np.stack([image] * 3), mask3d=np.zeros((3, 64, 64), np.float32), nsa_source=source)


def test_missing_mask_and_source_errors():
    image, source = _images((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="writes its label into the 'mask' target"):
        A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)])(image=image, nsa_source=source)
    strict = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0, missing_source="error")
    with pytest.raises(ValueError, match="needs a patch source"):
        A.Compose([strict])(image=image, mask=np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="empty sequence"):
        A.Compose([strict])(image=image, mask=np.zeros((64, 64), np.float32), nsa_source=[])
    with pytest.raises(TypeError, match="must match"):
        _call(A.Compose([strict]), image, source.astype(np.float32) / 255)


def test_source_from_self_and_from_a_list():
    image, source = _images((64, 64, 3), np.uint8)
    t = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    out = A.Compose([t], seed=0)(image=image, mask=np.zeros((64, 64), np.float32))  # cut from itself
    assert out["mask"].max() > 0
    others = [_images((64, 64, 3), np.uint8, seed=s)[1] for s in range(5)]
    seen = set()
    for seed in range(12):
        out = _call(A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/transistor", p=1.0)], seed=seed), image, others)
        seen.add(out["image"].tobytes())
    assert len(seen) > 1


def test_seeded_compose_reproduces_and_seeds_differ():
    image, source = _images((64, 64, 3), np.uint8)
    make = lambda seed: A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=0.7)], seed=seed)  # noqa: E731
    a, b, c = make(11), make(11), make(12)
    runs = [[_call(p, image, source) for _ in range(4)] for p in (a, b, c)]
    for x, y in zip(runs[0], runs[1]):
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["mask"], y["mask"])
    assert any(not np.array_equal(x["mask"], z["mask"]) for x, z in zip(runs[0], runs[2]))


def test_independent_of_neighbouring_transforms():
    """Albumentations 2.0.8 seeds every transform of a Compose identically; our decisions must not mirror theirs."""
    image, source = _images((64, 64, 3), np.uint8)
    agree = 0
    n = 120
    for seed in range(n):
        pipeline = A.Compose(
            [NaturalSyntheticAnomaly.from_preset("mvtec/cable", p=0.5), A.HorizontalFlip(p=0.5)],
            keypoint_params=A.KeypointParams("xy"),
            seed=seed,
        )
        out = _call(pipeline, image, source, keypoints=[(10.0, 10.0)])
        fired = bool(out["mask"].max() > 0)
        flipped = np.asarray(out["keypoints"])[0, 0] > 32
        agree += fired == flipped
    # perfectly correlated streams would agree n times out of n; independent ones about n/2
    assert 0.3 * n < agree < 0.7 * n


def test_serialisation_round_trips(tmp_path):
    image, source = _images((64, 64, 3), np.uint8)
    pipeline = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/bottle", p=1.0, label="binary"), A.VerticalFlip(p=0.5)])
    d = A.to_dict(pipeline)
    entry = d["transform"]["transforms"][0]
    assert entry["__class_fullname__"] == SERIALIZATION_NAME
    cfg = presets.get("mvtec/bottle")
    as_tuples = lambda v: tuple(as_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    assert as_tuples(entry["object_masks"]) == cfg.object_masks and as_tuples(entry["gamma"]) == cfg.gamma
    assert entry["label"] == "binary"
    restored = [A.from_dict(d)]
    for fmt in ("json", "yaml"):
        path = tmp_path / f"pipeline.{fmt}"
        A.save(pipeline, str(path), data_format=fmt)
        restored.append(A.load(str(path), data_format=fmt))
    for p in [pipeline, *restored]:
        p.set_random_seed(21)
    expected = _call(pipeline, image, source)
    for p in restored:
        assert p.transforms[0].config == pipeline.transforms[0].config
        got = _call(p, image, source)
        assert np.array_equal(got["image"], expected["image"]) and np.array_equal(got["mask"], expected["mask"])


def _apply_in_worker(args):
    transform, image, source, seed = args
    pipeline = A.Compose([transform], seed=seed)
    return _call(pipeline, image, source)["mask"].sum()


def test_picklable_and_usable_in_a_process_pool():
    image, source = _images((48, 48, 3), np.uint8)
    t = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.config == t.config
    with mp.get_context("spawn").Pool(2) as pool:
        sums = pool.map(_apply_in_worker, [(t, image, source, s) for s in range(4)])
    local = [_apply_in_worker((t, image, source, s)) for s in range(4)]
    assert np.allclose(sums, local) and max(sums) > 0


def test_replay_compose_replays():
    image, source = _images((64, 64, 3), np.uint8)
    pipeline = A.ReplayCompose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0), A.HorizontalFlip(p=0.5)])
    pipeline.set_random_seed(2)
    first = _call(pipeline, image, source)
    again = A.ReplayCompose.replay(first["replay"], image=image, mask=np.zeros((64, 64), np.float32), nsa_source=source)
    assert np.array_equal(first["image"], again["image"]) and np.array_equal(first["mask"], again["mask"])


@pytest.mark.parametrize("preset", ["mvtec/bottle", "mvtec/carpet"])  # with object masks, without
@pytest.mark.parametrize("target", ["image", "images"])
def test_a_call_checks_its_inputs_once_and_renders_what_a_replay_renders(preset, target, object_scene, tiles128,
                                                                         monkeypatch):
    """Sampling keeps the checked inputs and the object masks for the call's own render (one check of the
    inputs per image, no object masks computed again on the patches' boxes), releases them after the call,
    and renders bit for bit what the plan gives rendered afresh (a replay keeps nothing)."""
    from nsa_augment.methods.nsa import objects, synthesis

    a, source = object_scene if preset == "mvtec/bottle" else tiles128[:2]
    b = np.ascontiguousarray(a[::-1])
    calls = {"checks": 0, "box masks": 0}
    check, masks = synthesis._check_inputs, objects.spatial_object_mask

    def counted_check(*args, **kwargs):
        calls["checks"] += 1
        return check(*args, **kwargs)

    def counted_masks(array, pairs, box=None, intensity=None):
        calls["box masks"] += box is not None
        return masks(array, pairs, box, intensity)

    monkeypatch.setattr(synthesis, "_check_inputs", counted_check)
    monkeypatch.setattr(synthesis, "spatial_object_mask", counted_masks)
    t = NaturalSyntheticAnomaly.from_preset(preset, p=1.0)
    pipeline = A.ReplayCompose([t])
    pipeline.set_random_seed(3)
    images = [a] if target == "image" else [a, b]
    masks0 = lambda: np.zeros((len(images), *a.shape[:2]), np.float32)  # noqa: E731
    call = (lambda **kw: pipeline(image=a, mask=masks0()[0], **kw)) if target == "image" else \
        (lambda **kw: pipeline(images=np.stack(images), masks=masks0(), **kw))
    first = call(nsa_source=source)
    key = "mask" if target == "image" else "masks"
    assert first[key].max() > 0
    assert calls == {"checks": len(images), "box masks": 0} and t._kept == ()
    replay = A.ReplayCompose.replay
    again = replay(first["replay"], image=a, mask=masks0()[0], nsa_source=source) if target == "image" else \
        replay(first["replay"], images=np.stack(images), masks=masks0(), nsa_source=source)
    assert calls["checks"] == 2 * len(images) and (calls["box masks"] > 0) == (preset == "mvtec/bottle")
    image_key = "image" if target == "image" else "images"
    assert np.array_equal(first[image_key], again[image_key]) and np.array_equal(first[key], again[key])


def test_what_sampling_kept_is_never_pickled():
    """A call that raised between sampling and applying leaves its kept inputs on the transform until the next
    call; a pickle of the transform (a DataLoader's worker copy) carries none of them."""
    t = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    empty = len(pickle.dumps(t))
    t._kept, t._kept_items = [np.zeros(10**6)], (None, [np.zeros(10**6)])
    copy = pickle.loads(pickle.dumps(t))
    assert len(pickle.dumps(t)) == empty and copy._kept == () and copy._kept_items is None
    assert copy.config == t.config and copy.p == t.p


def test_transform_matches_functional_core():
    """The transform samples with its own generator and renders with synthesize's code path."""
    image, source = _images((64, 64, 3), np.uint8)
    t = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    t.set_random_seed(4)
    rng = np.random.default_rng(t.seed) if not IS_ALBUMENTATIONS_X else None
    out = t(image=image, mask=np.zeros((64, 64), np.float32), nsa_source=source)
    if rng is not None:
        ref_image, ref_label, _ = synthesize(image, source, t.config, rng)
        assert np.array_equal(out["image"], ref_image) and np.array_equal(out["mask"], ref_label)


def test_image_label_helper():
    assert image_label(np.zeros((4, 4), np.float32)) == 0
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = 0.2
    assert image_label(m) == 1 and image_label(m, threshold=0.5) == 0
    with pytest.raises(TypeError, match="numeric label map"):
        image_label(None)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        image_label(m, threshold=float("nan"))  # every comparison with NaN is False: always 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width_bounds": ((0.3, 0.1), (0.1, 0.2))}, "0 < min <= max <= 0.5"),
        ({"label": "soft"}, "label"),
        ({"num_patches": "many"}, "num_patches"),
        ({"p": 1.5}, "p"),
        ({"missing_source": "random"}, "missing_source"),
        ({"logistic": (0.0, 1.0)}, "logistic k"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NaturalSyntheticAnomaly(**kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        NaturalSyntheticAnomaly.from_preset("mvtec/carpets")


# --- plan + render: every target rendered from the plan, replays hold plans (issue: plan + render) ------


def _pipeline(cls_or_t=None, **compose):
    t = cls_or_t if cls_or_t is not None else NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)
    return A.Compose([t], **compose)


@pytest.mark.parametrize("make", [
    lambda: NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0),
    lambda: NaturalSyntheticAnomaly.from_preset("mvtec/hazelnut", p=1.0),
    lambda: CutPaste(p=1.0),
    lambda: DraemAnomaly(p=1.0),
], ids=["nsa", "nsa-objects", "cutpaste", "draem"])
def test_replay_renders_the_recorded_plan_on_the_new_image(make):
    a, source = _images((64, 64, 3), np.uint8)
    b, _ = _images((64, 64, 3), np.uint8, seed=9)
    t = make()
    pipeline = A.ReplayCompose([t, A.HorizontalFlip(p=0.5)])
    pipeline.set_random_seed(2)
    first = _call(pipeline, a, source)
    record = first["replay"]
    again = A.ReplayCompose.replay(record, image=b, mask=np.zeros((64, 64), np.float32), nsa_source=source)
    assert not np.array_equal(again["image"], first["image"])
    # what the replay gives is the recorded plan rendered on b (then the recorded flip)
    entry = record["transforms"][0]
    params = entry["params"] if "params" in entry else entry.get("replay_params", {})
    plan = (params.get("params", params))["nsa_plan"]
    image_b, label_b = t._render(b, source if t._takes_source() else None, plan)
    flipped = record["transforms"][1].get("applied")
    if flipped:
        image_b, label_b = image_b[:, ::-1], label_b[:, ::-1]
    assert np.array_equal(again["image"], image_b) and np.array_equal(again["mask"], label_b)
    assert len(pickle.dumps(record)) < 2048  # a plan, not pixels


def test_replay_without_the_source_is_an_error():
    a, source = _images((64, 64, 3), np.uint8)
    pipeline = A.ReplayCompose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)])
    first = _call(pipeline, a, source)
    with pytest.raises(ValueError, match="pass the same nsa_source"):
        A.ReplayCompose.replay(first["replay"], image=a, mask=np.zeros((64, 64), np.float32))


def test_additional_image_target_gets_its_own_render_and_other_masks_are_kept():
    a, source = _images((64, 64, 3), np.uint8)
    b, _ = _images((64, 64, 3), np.uint8, seed=4)
    segmentation = np.zeros((64, 64), np.uint8)
    segmentation[10:20, 10:20] = 3
    pipeline = A.ReplayCompose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)],
                               additional_targets={"image2": "image", "segmentation": "mask"})
    pipeline.set_random_seed(5)
    out = pipeline(image=a, image2=b, mask=np.zeros((64, 64), np.float32), segmentation=segmentation,
                   nsa_source=source)
    assert not np.array_equal(out["image2"], out["image"])
    assert np.array_equal(out["segmentation"], segmentation)  # not the anomaly label
    assert out["mask"].max() > 0
    entry = out["replay"]["transforms"][0]
    params = entry["params"] if "params" in entry else entry.get("replay_params", {})
    plan = (params.get("params", params))["nsa_plan"]
    t = pipeline.transforms[0]
    assert np.array_equal(out["image"], t._render(a, source, plan)[0])
    assert np.array_equal(out["image2"], t._render(b, source, plan)[0])


def test_strict_compose_accepts_the_source_key():
    a, source = _images((48, 48, 3), np.uint8)
    out = _call(_pipeline(strict=True, seed=0), a, source)
    assert out["mask"].max() > 0
    custom = NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0, source_key="patches")
    out = A.Compose([custom], strict=True, seed=0)(image=a, mask=np.zeros((48, 48), np.float32), patches=[source])
    assert out["mask"].max() > 0
    with pytest.raises(ValueError, match="not in available keys"):
        _call(_pipeline(strict=True), a, source, typo=1)


_FRESH = """
import json, sys
{imports}
import albumentations as A, numpy as np
pipeline = A.from_dict(json.loads(sys.argv[1]))
pipeline.set_random_seed(3)
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
out = pipeline(image=img, mask=np.zeros((48, 48), np.float32), nsa_source=img[::-1].copy())
print(type(pipeline.transforms[0]).__name__, float(out["mask"].max()) > 0)
"""


@pytest.mark.parametrize("imports", ["import nsa_augment", "import albumentations\nimport nsa_augment"],
                         ids=["nsa-first", "albumentations-first"])
def test_load_in_a_fresh_process_after_only_importing_nsa_augment(imports, tmp_path):
    import json
    import subprocess
    import sys

    pipeline = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/bottle", p=1.0), CutPaste(p=0.5)])
    code = _FRESH.format(imports=imports)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(A.to_dict(pipeline))], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["NaturalSyntheticAnomaly", "True"]


def test_misspelled_argument_is_a_type_error_naming_the_closest():
    with pytest.raises(TypeError, match="unexpected argument 'num_patchs'; did you mean 'num_patches'"):
        NaturalSyntheticAnomaly(num_patchs=3)
    with pytest.raises(TypeError, match="did you mean 'source_key'"):
        NaturalSyntheticAnomaly.from_preset("mvtec/carpet", sourc_key="x")
    with pytest.raises(TypeError, match="did you mean 'area_ratio'"):
        CutPaste(area_ratios=(0.1, 0.2))


def test_draem_threshold_outside_the_noise_range_is_refused():
    with pytest.raises(ValueError, match="threshold must lie strictly inside the noise range"):
        DraemAnomaly(threshold=5)


def test_defaults_agree_between_config_and_transform():
    import dataclasses
    import inspect

    from nsa_augment.methods import CutPasteConfig, DraemConfig, ScarConfig
    from nsa_augment.transforms import CutPasteScar

    for cls, config_type in ((NaturalSyntheticAnomaly, NSAConfig), (CutPaste, CutPasteConfig),
                             (CutPasteScar, ScarConfig), (DraemAnomaly, DraemConfig)):
        params = inspect.signature(cls).parameters
        for f in dataclasses.fields(config_type):
            assert params[f.name].default == f.default, (cls.__name__, f.name)
        assert cls().config == config_type()
        args = cls().get_transform_init_args()
        assert cls(**args).config == config_type()


def test_config_plus_overrides():
    cfg = presets.get("mvtec/carpet")
    t = NaturalSyntheticAnomaly(cfg, label="binary", p=0.3)
    assert t.config == cfg.replace(label="binary") and t.p == 0.3
    with pytest.raises(TypeError, match="must be a NSAConfig"):
        NaturalSyntheticAnomaly("mvtec/carpet")


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_16_bit_images_through_the_transform(dtype):
    a, b = _images((64, 64), np.uint8)
    to16 = (lambda x: x.astype(np.uint16) * 16) if dtype == np.uint16 else (lambda x: x.astype(np.int16) * 8 - 1000)
    image, source = to16(a), to16(b)
    for t in (NaturalSyntheticAnomaly.from_preset("chestxray", p=1.0),
              NaturalSyntheticAnomaly.from_preset("medical/ct", p=1.0), CutPaste(p=1.0), DraemAnomaly(p=1.0)):
        out = A.Compose([t], seed=0)(image=image, mask=np.zeros((64, 64), np.float32), nsa_source=source)
        assert out["image"].dtype == dtype and out["image"].shape == image.shape
        assert out["mask"].max() > 0 and (out["image"] != image).any()


def test_volume_transform_on_volume_targets(monkeypatch):
    from nsa_augment import NaturalSyntheticAnomaly3D, render_volume_anomaly
    from nsa_augment.methods.nsa import synthesis

    checks, check = [], synthesis._check_inputs
    monkeypatch.setattr(synthesis, "_check_inputs", lambda *args, **kw: checks.append(1) or check(*args, **kw))
    rng = np.random.default_rng(0)
    volume = rng.integers(200, 900, (24, 48, 48)).astype(np.int16)
    other = rng.integers(200, 900, (24, 48, 48)).astype(np.int16)
    segmentation = np.zeros((24, 48, 48), np.uint8)
    t = NaturalSyntheticAnomaly3D.from_preset("medical/brain-mri", p=1.0)
    pipeline = A.ReplayCompose([t], additional_targets={"seg3d": "mask3d"})
    pipeline.set_random_seed(1)
    out = pipeline(volume=volume, mask3d=np.zeros((24, 48, 48), np.float32), seg3d=segmentation, nsa_source=other)
    assert out["volume"].dtype == np.int16 and out["mask3d"].shape == (24, 48, 48)
    assert (out["volume"] != volume).any() and out["mask3d"].max() > 0 and np.array_equal(out["seg3d"], segmentation)
    assert len(checks) == 1 and t._kept == ()  # the call rendered what it planned, from the inputs it checked
    entry = out["replay"]["transforms"][0]
    params = entry["params"] if "params" in entry else entry.get("replay_params", {})
    plan = (params.get("params", params))["nsa_plan"]
    expected, label = render_volume_anomaly(volume, other, t.config, plan)
    assert np.array_equal(out["volume"], expected) and np.array_equal(out["mask3d"], np.maximum(label, 0))
    with pytest.raises(ValueError, match="mask3d"):
        A.Compose([t])(volume=volume, nsa_source=other)
    with pytest.raises(ValueError, match="needs a 'volume' target"):
        A.Compose([t])(image=volume[0], mask=np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError, match="width_bounds for 3 axes"):
        NaturalSyntheticAnomaly3D.from_preset("mvtec/carpet")
    with pytest.raises(ValueError, match="use NaturalSyntheticAnomaly3D"):
        NaturalSyntheticAnomaly.from_preset("medical/brain-mri")
    restored = A.from_dict(A.to_dict(A.Compose([t])))
    assert type(restored.transforms[0]).__name__ == "NaturalSyntheticAnomaly3D" and restored.transforms[0].config == t.config
