"""Presets are the paper's table, as data."""

import json

import pytest

from nsa_augment import NSAConfig, presets


def test_all_classes_present():
    assert len(presets.MVTEC_CLASSES) == 15
    assert set(presets.names()) == {f"mvtec/{c}" for c in presets.MVTEC_CLASSES} | {"chestxray", "medical/ct", "medical/brain-mri"}
    assert presets.get("carpet") is presets.get("mvtec/carpet")


@pytest.mark.parametrize(
    "name, gradients, bounds, patches, masks, min_object, logistic, rescale",
    [
        ("mvtec/carpet", "mixed", ((0.03, 0.4), (0.03, 0.4)), 4, None, None, (1 / 3, 7), (0.5, 2.0)),
        ("mvtec/wood", "mixed", ((0.03, 0.4), (0.03, 0.4)), 4, None, None, (1 / 6, 15), (0.5, 2.0)),
        ("mvtec/bottle", "normal", ((0.03, 0.4), (0.03, 0.4)), 3, ((200, 60),), 0.7, (1 / 12, 24), (0.7, 1.3)),
        ("mvtec/capsule", "normal", ((0.03, 0.15), (0.03, 0.4)), 3, ((200, 60),), 0.7, (1 / 2, 4), (0.7, 1.3)),
        ("mvtec/hazelnut", "normal", ((0.03, 0.35), (0.03, 0.35)), 3, ((20, 20),), 0.7, (1 / 12, 24), (0.7, 1.3)),
        ("mvtec/metal_nut", "normal", ((0.03, 0.4), (0.03, 0.4)), 3, ((20, 20),), 0.5, (1 / 3, 7), (0.7, 1.3)),
        ("mvtec/screw", "normal", ((0.03, 0.12), (0.03, 0.12)), 4, ((200, 60),), 0.5, (1, 3), (0.7, 1.3)),
        ("mvtec/toothbrush", "normal", ((0.03, 0.4), (0.03, 0.2)), 3, ((20, 20),), 0.25, (1 / 6, 15), (0.7, 1.3)),
        ("mvtec/cable", "normal", ((0.05, 0.4), (0.05, 0.4)), 3, None, None, (1 / 12, 24), (0.7, 1.3)),
        ("mvtec/zipper", "normal", ((0.03, 0.4), (0.03, 0.2)), 4, ((200, 60),), 0.7, (1 / 6, 15), (0.7, 1.3)),
        ("chestxray", "mixed", ((0.03, 0.4), (0.03, 0.4)), 3, ((0, 20),), 0.7, (1 / 2, 4), (0.5, 2.0)),
    ],
)
def test_preset_values(name, gradients, bounds, patches, masks, min_object, logistic, rescale):
    cfg = presets.get(name)
    assert cfg.gradients == gradients and cfg.width_bounds == bounds and cfg.num_patches == patches
    assert cfg.object_masks == masks and cfg.logistic == pytest.approx(logistic) and cfg.rescale_bounds == rescale
    if min_object is not None:
        assert cfg.min_object == min_object
    assert cfg.label == "logistic" and cfg.blend == "poisson" and cfg.rescale and cfg.shift and cfg.tol == 1.0
    assert cfg.gamma == ((2.0, 0.03, 0.05) if name == "chestxray" else (2.0, 0.05, 0.03))


def test_presets_are_plain_data():
    for name in presets.names():
        cfg = presets.get(name)
        d = cfg.to_dict()
        json.dumps(d)
        assert NSAConfig(**d) == cfg
    assert presets.get("mvtec/carpet").replace(label="binary").label == "binary"
    assert presets.get("mvtec/carpet").label == "logistic"  # frozen, replace() copies


def test_unknown_preset():
    with pytest.raises(ValueError, match="known presets: chestxray, medical/brain-mri, medical/ct, mvtec/bottle"):
        presets.get("mvtec/carpets")
    with pytest.raises(TypeError):
        presets.get(3)


def test_training_metadata():
    assert presets.TRAINING["mvtec/hazelnut"] == {"kind": "object", "epochs": 560}
    assert presets.TRAINING["mvtec/grid"]["kind"] == "texture"


def test_a_preset_file_is_a_config(tmp_path):
    cfg = presets.get("mvtec/tile").replace(gradients="normal", label="binary")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(cfg.to_dict()))
    loaded = presets.load(path)
    assert loaded == cfg and loaded.name == "mvtec/tile"
    assert presets.load("mvtec/tile") is presets.get("mvtec/tile")
    path.write_text(json.dumps({"num_patchs": 2}))
    with pytest.raises(ValueError, match="num_patchs"):
        presets.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the preset file"):
        presets.load(path)
