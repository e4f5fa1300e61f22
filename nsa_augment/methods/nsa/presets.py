"""Per-class generator settings from the NSA paper, as plain data.

``get("mvtec/carpet")`` returns the :class:`~nsa_augment.config.NSAConfig` the
paper used for that MVTec AD class (its supplementary table; restated in
``docs/algorithm.md``).  A preset is data only: every behaviour is a field of
the config, so ``get(name).replace(label="binary")`` is an ordinary variant.

Besides the generator settings, :data:`TRAINING` records each class's epochs and
whether it is an object or texture class, which the training example uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import NSAConfig

_GAMMA = (2.0, 0.05, 0.03)
_OBJECT_RESCALE = (0.7, 1.3)
_TEXTURE_RESCALE = (0.5, 2.0)

# class: (row bounds, col bounds, num_patches, object mask pairs, min_object, min_overlap, (k, x0), epochs)
_MVTEC_OBJECTS = {
    "bottle": ((0.03, 0.4), (0.03, 0.4), 3, ((200, 60),), 0.7, 0.25, (1 / 12, 24), 320),
    "cable": ((0.05, 0.4), (0.05, 0.4), 3, None, 0.25, 0.25, (1 / 12, 24), 320),
    "capsule": ((0.03, 0.15), (0.03, 0.4), 3, ((200, 60),), 0.7, 0.25, (1 / 2, 4), 320),
    "hazelnut": ((0.03, 0.35), (0.03, 0.35), 3, ((20, 20),), 0.7, 0.25, (1 / 12, 24), 560),
    "metal_nut": ((0.03, 0.4), (0.03, 0.4), 3, ((20, 20),), 0.5, 0.25, (1 / 3, 7), 560),
    "pill": ((0.03, 0.2), (0.03, 0.4), 3, ((20, 20),), 0.7, 0.25, (1 / 3, 7), 320),
    "screw": ((0.03, 0.12), (0.03, 0.12), 4, ((200, 60),), 0.5, 0.25, (1, 3), 560),
    "toothbrush": ((0.03, 0.4), (0.03, 0.2), 3, ((20, 20),), 0.25, 0.25, (1 / 6, 15), 320),
    "transistor": ((0.03, 0.4), (0.03, 0.4), 3, None, 0.25, 0.25, (1 / 6, 15), 320),
    "zipper": ((0.03, 0.4), (0.03, 0.2), 4, ((200, 60),), 0.7, 0.25, (1 / 6, 15), 320),
}
_MVTEC_TEXTURES = {
    "carpet": (1 / 3, 7),
    "grid": (1 / 3, 7),
    "leather": (1 / 3, 7),
    "tile": (1 / 3, 7),
    "wood": (1 / 6, 15),
}


def _build() -> tuple[dict[str, NSAConfig], dict[str, dict]]:
    presets, training = {}, {}
    for cls, (rows, cols, n, masks, min_obj, min_ov, logistic, epochs) in _MVTEC_OBJECTS.items():
        name = f"mvtec/{cls}"
        presets[name] = NSAConfig(
            name=name, num_patches=n, width_bounds=(rows, cols), gamma=_GAMMA, rescale=True,
            rescale_bounds=_OBJECT_RESCALE, shift=True, blend="poisson", gradients="normal",
            object_masks=masks, min_object=min_obj, min_overlap=min_ov, label="logistic", logistic=logistic, tol=1.0,
        )
        training[name] = {"kind": "object", "epochs": epochs}
    for cls, logistic in _MVTEC_TEXTURES.items():
        name = f"mvtec/{cls}"
        presets[name] = NSAConfig(
            name=name, num_patches=4, width_bounds=((0.03, 0.4), (0.03, 0.4)), gamma=_GAMMA, rescale=True,
            rescale_bounds=_TEXTURE_RESCALE, shift=True, blend="poisson", gradients="mixed",
            object_masks=None, label="logistic", logistic=logistic, tol=1.0,
        )
        training[name] = {"kind": "texture", "epochs": 320}
    presets["chestxray"] = NSAConfig(
        name="chestxray", num_patches=3, width_bounds=((0.03, 0.4), (0.03, 0.4)), gamma=(2.0, 0.03, 0.05),
        rescale=True, rescale_bounds=_TEXTURE_RESCALE, shift=True, blend="poisson", gradients="mixed",
        object_masks=((0, 20),), min_object=0.7, min_overlap=0.7, label="logistic", logistic=(1 / 2, 4), tol=1.0,
    )
    training["chestxray"] = {"kind": "medical", "epochs": 240}
    # CT slices (not in the paper; docs/medical.md): the chest X-ray settings read through a fixed window
    # of -1000..1000 HU, so that air is level 0, water 128, dense bone 255 on every slice of every scan,
    # and the object mask (0, 20) keeps patches on the body (above about -840 HU), not in the air around it.
    presets["medical/ct"] = presets["chestxray"].replace(name="medical/ct", intensity_range=(-1000.0, 1000.0))
    training["medical/ct"] = {"kind": "medical", "epochs": 240}
    # Brain MRI volumes (not in the paper; docs/medical.md): the authors' medical settings (chest X-ray
    # geometry, mixed gradients, logistic (1/2, 4)) with a half-width pair for the slices too; the object
    # mask (0, 20) on each volume's own range keeps the cuboids inside the head, and min_overlap 0.7 makes
    # them land mostly on brain rather than on the air around it.
    presets["medical/brain-mri"] = presets["chestxray"].replace(
        name="medical/brain-mri", width_bounds=((0.03, 0.4), (0.03, 0.4), (0.03, 0.4)))
    training["medical/brain-mri"] = {"kind": "medical", "epochs": 240}
    return presets, training


PRESETS, TRAINING = _build()

#: The 15 MVTec AD classes, objects first.
MVTEC_CLASSES = tuple(list(_MVTEC_OBJECTS) + list(_MVTEC_TEXTURES))


def names() -> list[str]:
    """All preset names."""
    return sorted(PRESETS)


def get(name: str) -> NSAConfig:
    """The preset called ``name`` (e.g. ``"mvtec/carpet"``; a bare MVTec class name works too).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"preset name must be a string, got {type(name).__name__}")
    key = name if name in PRESETS else f"mvtec/{name}"
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(names())}")
    return PRESETS[key]


def load(name_or_path: str | Path) -> NSAConfig:
    """A preset by name, or an :class:`NSAConfig` from a JSON file (``NSAConfig.to_dict()`` written with ``json.dump``).

    A file lets a tuned configuration travel as data: ``nsa-augment train --preset my_config.json``.

    Raises
    ------
    ValueError
        Unknown name, unreadable file, or invalid settings (the message says which).
    """
    text = str(name_or_path)
    if not text.endswith(".json"):
        return get(text)
    path = Path(text)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the preset file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset file {path} must hold a JSON object of NSAConfig fields")
    try:
        return NSAConfig(**{"name": path.stem, **data})
    except TypeError as exc:
        raise ValueError(f"preset file {path}: {exc}") from None


def resolve(config: NSAConfig | str, *, files: bool = False) -> NSAConfig:
    """``config`` itself if it is an :class:`NSAConfig`, else the preset it names (with ``files``, also a
    JSON file, as :func:`load`): the one way every function taking ``config`` reads it.

    Raises
    ------
    TypeError
        For anything that is neither a config nor a string.
    """
    cfg = (load(config) if files else get(config)) if isinstance(config, str) else config
    if not isinstance(cfg, NSAConfig):
        raise TypeError(f"config must be an NSAConfig or a preset name, got {type(config).__name__}")
    return cfg
