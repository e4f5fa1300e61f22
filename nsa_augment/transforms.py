"""``NaturalSyntheticAnomaly``: NSA as an Albumentations transform.

Works with albumentations 2.0.8 (MIT) and AlbumentationsX >= 2.4.3, which share
the import name ``albumentations`` but differ in how a transform samples its
parameters (``get_params_dependent_on_data`` vs ``sample_parameters``); the
class defines whichever hook the installed package calls.  The transform only
validates arguments and samples a plan; the pixel work is
:func:`nsa_augment.render_anomaly`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema, DualTransform
from albumentations.core.type_definitions import Targets
from pydantic import model_validator

from . import presets
from .config import NSAConfig
from .synthesis import _check_inputs, _plan, _render

#: AlbumentationsX replaced the sampling hooks with ``sample_parameters``.
IS_ALBUMENTATIONS_X = hasattr(A.core.transforms_interface.BasicTransform, "sample_parameters")
if IS_ALBUMENTATIONS_X:  # pragma: no cover - exercised by the AlbumentationsX CI job
    from albumentations.core.transform_params import SampledParams

#: Stable name under which pipelines are serialised (survives refactors of this module).
SERIALIZATION_NAME = "nsa_augment.NaturalSyntheticAnomaly"

# Albumentations 2.0.8 gives every transform of a seeded Compose the *same* seed, so
# transforms sampling alike would make perfectly correlated decisions.  We derive our
# stream from (seed, this constant) instead.
_STREAM_TAG = 0x4E5341  # "NSA"

_CONFIG_FIELDS = tuple(f for f in NSAConfig.__dataclass_fields__ if f != "name")


def decorrelated_seed(seed: int) -> int:
    """A 32-bit seed derived from ``seed`` for this transform's own stream."""
    return int(np.random.SeedSequence([int(seed) % 2**64, _STREAM_TAG]).generate_state(1)[0])


# Declared explicitly: AlbumentationsX dispatches only the targets a transform declares.
_TARGETS = tuple(
    getattr(Targets, t)
    for t in ("IMAGE", "IMAGES", "MASK", "MASKS", "BBOXES", "KEYPOINTS", "VOLUME", "VOLUMES", "MASK3D", "MASKS3D")
    if hasattr(Targets, t)
)


class NaturalSyntheticAnomaly(DualTransform):
    """Blend natural synthetic anomalies (NSA) into the image and write their label into ``mask``.

    Every :class:`~nsa_augment.NSAConfig` field is a keyword argument (defaults
    as there); :meth:`from_preset` fills them from the paper's per-class table.

    The patch source comes at call time under ``source_key`` (like
    Albumentations' FDA/HistogramMatching metadata): one array, or a sequence
    to pick from with the transform's own RNG.  Without it the patch is cut
    from the image itself (``missing_source="self"``) or an error is raised
    (``missing_source="error"``).

    Targets: image, mask (the label map, float32, max-combined with the
    incoming mask), images + masks (one independent anomaly per item),
    bboxes and keypoints (unchanged).  Volumes are rejected: NSA is 2-D, and a
    slice-consistent 3-D anomaly would need a 3-D Poisson solve.

    Examples
    --------
    >>> import numpy as np, albumentations as A
    >>> from nsa_augment import NaturalSyntheticAnomaly
    >>> rng = np.random.default_rng(0)
    >>> image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> other = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> pipeline = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)], seed=0)
    >>> out = pipeline(image=image, mask=np.zeros((64, 64), np.float32), nsa_source=other)
    >>> out["image"].shape, out["mask"].dtype
    ((64, 64, 3), dtype('float32'))
    """

    _targets = _TARGETS

    class InitSchema(BaseTransformInitSchema):
        num_patches: int
        width_bounds: tuple[tuple[float, float], tuple[float, float]]
        gamma: tuple[float, float, float] | None
        rescale: bool
        rescale_bounds: tuple[float, float]
        rescale_clip: Literal["full", "reference"]
        shift: bool
        blend: Literal["poisson", "paste", "alpha"]
        gradients: Literal["normal", "mixed", "mix", "interpolated"]
        object_masks: tuple[tuple[float, float], ...] | None
        min_object: float
        min_overlap: float
        label: Literal["binary", "continuous", "intensity", "logistic"]
        logistic: tuple[float, float]
        tol: float
        factor_range: tuple[float, float]
        same_source: bool
        max_attempts: int
        source_key: str
        missing_source: Literal["self", "error"]

        @model_validator(mode="after")
        def _consistent(self):
            # NSAConfig owns the cross-field rules (bounds order, ranges, ...).
            NSAConfig(**{f: getattr(self, f) for f in _CONFIG_FIELDS})
            return self

    def __init__(
        self,
        num_patches: int = 1,
        width_bounds: tuple[tuple[float, float], tuple[float, float]] = ((0.05, 0.2), (0.05, 0.2)),
        gamma: tuple[float, float, float] | None = None,
        rescale: bool = True,
        rescale_bounds: tuple[float, float] = (0.7, 1.3),
        rescale_clip: Literal["full", "reference"] = "full",
        shift: bool = True,
        blend: Literal["poisson", "paste", "alpha"] = "poisson",
        gradients: Literal["normal", "mixed", "mix", "interpolated"] = "normal",
        object_masks: tuple[tuple[float, float], ...] | None = None,
        min_object: float = 0.25,
        min_overlap: float = 0.25,
        label: Literal["binary", "continuous", "intensity", "logistic"] = "binary",
        logistic: tuple[float, float] = (1 / 6, 20.0),
        tol: float = 1.0,
        factor_range: tuple[float, float] = (0.05, 0.95),
        same_source: bool = False,
        max_attempts: int = 200,
        source_key: str = "nsa_source",
        missing_source: Literal["self", "error"] = "self",
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.num_patches = num_patches
        self.width_bounds = width_bounds
        self.gamma = gamma
        self.rescale = rescale
        self.rescale_bounds = rescale_bounds
        self.rescale_clip = rescale_clip
        self.shift = shift
        self.blend = blend
        self.gradients = gradients
        self.object_masks = object_masks
        self.min_object = min_object
        self.min_overlap = min_overlap
        self.label = label
        self.logistic = logistic
        self.tol = tol
        self.factor_range = factor_range
        self.same_source = same_source
        self.max_attempts = max_attempts
        self.source_key = source_key
        self.missing_source = missing_source

    # --- construction and serialisation ---------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> NaturalSyntheticAnomaly:
        """The transform for a preset (``"mvtec/bottle"``, ``"chestxray"``, ...), with optional overrides."""
        cfg = presets.get(name)
        kwargs = {f: getattr(cfg, f) for f in _CONFIG_FIELDS}
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: NSAConfig, **kwargs: Any) -> NaturalSyntheticAnomaly:
        """The transform for an :class:`NSAConfig` (plus ``p``, ``source_key``, ...)."""
        return cls(**{f: getattr(config, f) for f in _CONFIG_FIELDS}, **kwargs)

    @property
    def config(self) -> NSAConfig:
        """The generator settings as an :class:`NSAConfig`."""
        return NSAConfig(**{f: getattr(self, f) for f in _CONFIG_FIELDS})

    @classmethod
    def get_class_fullname(cls) -> str:
        return SERIALIZATION_NAME

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*_CONFIG_FIELDS, "source_key", "missing_source")

    def get_transform_init_args(self) -> dict[str, Any]:
        # Every argument under its own name, None included (the base class drops empty values).
        return {name: getattr(self, name) for name in self.get_transform_init_args_names()}

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(None if seed is None else decorrelated_seed(seed))

    # --- sampling (random) ------------------------------------------------------------------------

    def _sample(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if "volume" in data or "volumes" in data:
            raise ValueError(
                "NaturalSyntheticAnomaly does not support volumes: NSA blends 2-D patches; apply it per slice "
                "with 'images' (independent anomalies) or use a 2-D pipeline"
            )
        if "image" not in data and "images" not in data:
            raise ValueError("NaturalSyntheticAnomaly needs an 'image' (or 'images') target")
        cfg = self.config
        source = data.get(self.source_key)
        if "images" in data and "image" not in data:
            if "masks" not in data:
                raise ValueError(self._needs_mask("masks"))
            plans, images, labels = [], [], []
            for item in data["images"]:
                out_img, out_label, plan = self._one(item, self._pick_source(source, rng), cfg, rng)
                plans.append(plan)
                images.append(out_img)
                labels.append(out_label)
            return {"nsa_images": images, "nsa_labels": labels, "nsa_plans": plans}
        if "mask" not in data:
            raise ValueError(self._needs_mask("mask"))
        out_img, out_label, plan = self._one(data["image"], self._pick_source(source, rng), cfg, rng)
        return {"nsa_image": out_img, "nsa_label": out_label, "nsa_plan": plan}

    def _one(self, image, source, cfg, rng):
        cfg_, dst3, src3 = _check_inputs(image, source, cfg)
        plan = _plan(dst3, src3, cfg_, rng)
        out, label = _render(dst3, src3, cfg_, plan)
        return out.reshape(image.shape), label, plan

    def _pick_source(self, source, rng):
        if source is None:
            if self.missing_source == "error":
                raise ValueError(
                    f"NaturalSyntheticAnomaly needs a patch source: pass {self.source_key}=<array or list of arrays> "
                    "in the call, or use missing_source='self' to cut from the image itself"
                )
            return None
        if isinstance(source, np.ndarray):
            return source
        if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
            if len(source) == 0:
                raise ValueError(f"{self.source_key} is an empty sequence: give at least one source image")
            return source[int(rng.integers(len(source)))]
        raise TypeError(f"{self.source_key} must be an array or a sequence of arrays, got {type(source).__name__}")

    @staticmethod
    def _needs_mask(key):
        shape = "image.shape[:2]" if key == "mask" else "(len(images),) + images[0].shape[:2]"
        return (
            f"NaturalSyntheticAnomaly writes its label into the '{key}' target, which was not passed: "
            f"call the pipeline with {key}=np.zeros({shape}, np.float32)"
        )

    if IS_ALBUMENTATIONS_X:  # pragma: no cover - exercised by the AlbumentationsX CI job

        def sample_parameters(self, params, data, targets, sampling):
            return SampledParams(params=self._sample(data, sampling.random_generator))

    else:

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            return self._sample(data, self.random_generator)

    # --- applying (pure: the result was rendered from the sampled plan) ------------------------

    def apply(self, img: np.ndarray, nsa_image: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if nsa_image is None:
            return img
        if nsa_image.shape != img.shape:
            raise ValueError(f"image shape {img.shape} differs from the shape {nsa_image.shape} the anomaly was made for")
        return nsa_image

    def apply_to_mask(self, mask: np.ndarray, nsa_label: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if nsa_label is None:
            return mask
        return _combine(mask, nsa_label)

    def apply_to_images(self, images, nsa_images=None, **params: Any):
        if nsa_images is None:
            return images
        return np.stack(nsa_images)

    def apply_to_masks(self, masks, nsa_labels=None, **params: Any):
        if nsa_labels is None:  # a single image: other masks are not ours to change
            return masks
        return np.stack([_combine(m, lab) for m, lab in zip(masks, nsa_labels)])

    def apply_to_bboxes(self, bboxes, *args: Any, **params: Any):
        return bboxes

    def apply_to_keypoints(self, keypoints, *args: Any, **params: Any):
        return keypoints


def _combine(mask: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The incoming mask with the new label max-combined in, as float32 of the mask's shape."""
    if mask.shape[:2] != label.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {label.shape}")
    lab = label if mask.ndim == 2 else label[:, :, None]
    return np.maximum(mask.astype(np.float32), lab)
