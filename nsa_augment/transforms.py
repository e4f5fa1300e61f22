"""Synthetic anomalies as Albumentations transforms: NSA and its peers under one interface.

``NaturalSyntheticAnomaly`` (NSA, and through its options FPI, PII and the NSA
paper's CutPaste variant), ``CutPaste``, ``CutPasteScar`` and ``DraemAnomaly``
share one base: the anomaly goes into ``image``, its label into ``mask``; a
patch source comes at call time under a metadata key; ``images`` batches get one
anomaly per item; volumes are rejected; the transform's random stream is its
own.  Works with albumentations 2.0.8 (MIT) and AlbumentationsX >= 2.4.3, which
share the import name ``albumentations`` but differ in how a transform samples
its parameters (``get_params_dependent_on_data`` vs ``sample_parameters``); the
base defines whichever hook the installed package calls.  The classes only
validate arguments and sample; the pixel work is the functional core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import albumentations as A
import zlib

import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema, DualTransform
from albumentations.core.type_definitions import Targets
from pydantic import model_validator

from . import presets
from .baselines import cutpaste, cutpaste_scar, draem_anomaly
from .config import NSAConfig
from .synthesis import _check_inputs, _plan, _render

#: AlbumentationsX replaced the sampling hooks with ``sample_parameters``.
IS_ALBUMENTATIONS_X = hasattr(A.core.transforms_interface.BasicTransform, "sample_parameters")
if IS_ALBUMENTATIONS_X:  # pragma: no cover - exercised by the AlbumentationsX CI job
    from albumentations.core.transform_params import SampledParams

#: Stable name under which NSA pipelines are serialised (survives refactors of this module).
SERIALIZATION_NAME = "nsa_augment.NaturalSyntheticAnomaly"

# Albumentations 2.0.8 gives every transform of a seeded Compose the *same* seed, so
# transforms sampling alike would make perfectly correlated decisions.  We derive our
# stream from (seed, this constant) instead.
_STREAM_TAG = 0x4E5341  # "NSA"

_CONFIG_FIELDS = tuple(f for f in NSAConfig.__dataclass_fields__ if f != "name")


def decorrelated_seed(seed: int, tag: int = _STREAM_TAG) -> int:
    """A 32-bit seed derived from ``(seed, tag)`` for a transform's own stream."""
    return int(np.random.SeedSequence([int(seed) % 2**64, tag]).generate_state(1)[0])


# Declared explicitly: AlbumentationsX dispatches only the targets a transform declares.
_TARGETS = tuple(
    getattr(Targets, t)
    for t in ("IMAGE", "IMAGES", "MASK", "MASKS", "BBOXES", "KEYPOINTS", "VOLUME", "VOLUMES", "MASK3D", "MASKS3D")
    if hasattr(Targets, t)
)


class _SyntheticAnomalyTransform(DualTransform):
    """Shared machinery: targets, sources, batches, seeding, the sampling hook of either Albumentations.

    Subclasses define ``InitSchema``, ``__init__`` and ``_generate(image, source, rng) -> (image, label)``.
    """

    _targets = _TARGETS
    #: Whether the method takes its patches from a source image (else from the image itself).
    uses_source = True
    source_key = "nsa_source"
    missing_source = "self"

    @classmethod
    def get_class_fullname(cls) -> str:
        return f"nsa_augment.{cls.__name__}"

    def get_transform_init_args(self) -> dict[str, Any]:
        # Every argument under its own name, None included (the base class drops empty values).
        return {name: getattr(self, name) for name in self.get_transform_init_args_names()}

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(None if seed is None else decorrelated_seed(seed, self._stream_tag()))

    @classmethod
    def _stream_tag(cls) -> int:
        return zlib.crc32(cls.__name__.encode())

    def _generate(self, image: np.ndarray, source: np.ndarray | None, rng: np.random.Generator):
        raise NotImplementedError

    # --- sampling (random) ------------------------------------------------------------------------

    def _sample(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if "volume" in data or "volumes" in data:
            raise ValueError(
                f"{type(self).__name__} does not support volumes: NSA blends 2-D patches; apply it per slice "
                "with 'images' (independent anomalies) or use a 2-D pipeline"
            )
        if "image" not in data and "images" not in data:
            raise ValueError(f"{type(self).__name__} needs an 'image' (or 'images') target")
        source = data.get(self.source_key) if self.uses_source else None
        if "images" in data and "image" not in data:
            if "masks" not in data:
                raise ValueError(self._needs_mask("masks"))
            images, labels = [], []
            for item in data["images"]:
                out_img, out_label = self._generate(item, self._pick_source(source, rng), rng)
                images.append(out_img)
                labels.append(out_label)
            return {"nsa_images": images, "nsa_labels": labels}
        if "mask" not in data:
            raise ValueError(self._needs_mask("mask"))
        out_img, out_label = self._generate(data["image"], self._pick_source(source, rng), rng)
        return {"nsa_image": out_img, "nsa_label": out_label}

    def _pick_source(self, source, rng):
        if not self.uses_source:
            return None
        if source is None:
            if self.missing_source == "error":
                raise ValueError(
                    f"{type(self).__name__} needs a patch source: pass {self.source_key}=<array or list of arrays> "
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

    def _needs_mask(self, key):
        shape = "image.shape[:2]" if key == "mask" else "(len(images),) + images[0].shape[:2]"
        return (
            f"{type(self).__name__} writes its label into the '{key}' target, which was not passed: "
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



class NaturalSyntheticAnomaly(_SyntheticAnomalyTransform):
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

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*_CONFIG_FIELDS, "source_key", "missing_source")

    @classmethod
    def _stream_tag(cls) -> int:
        return _STREAM_TAG

    def _generate(self, image, source, rng):
        cfg, dst3, src3 = _check_inputs(image, source, self.config)
        out, label = _render(dst3, src3, cfg, _plan(dst3, src3, cfg, rng))
        return out.reshape(image.shape), label



class CutPaste(_SyntheticAnomalyTransform):
    """CutPaste (Li et al., CVPR 2021) as a transform: label 1 on the pasted rectangle.

    See :func:`nsa_augment.baselines.cutpaste`.  The patch comes from the image itself.
    """

    uses_source = False

    class InitSchema(BaseTransformInitSchema):
        area_ratio: tuple[float, float]
        aspect_ratio: tuple[tuple[float, float], tuple[float, float]]
        jitter: float

        @model_validator(mode="after")
        def _ranges(self):
            lo, hi = self.area_ratio
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"area_ratio must satisfy 0 < lo <= hi <= 1, got {self.area_ratio}")
            for a, b in self.aspect_ratio:
                if not 0 < a <= b:
                    raise ValueError(f"aspect_ratio ranges must satisfy 0 < lo <= hi, got {self.aspect_ratio}")
            if not 0 <= self.jitter <= 1:
                raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")
            return self

    def __init__(self, area_ratio: tuple[float, float] = (0.02, 0.15),
                 aspect_ratio: tuple[tuple[float, float], tuple[float, float]] = ((0.3, 1.0), (1.0, 3.3)),
                 jitter: float = 0.1, p: float = 0.5):
        super().__init__(p=p)
        self.area_ratio = area_ratio
        self.aspect_ratio = aspect_ratio
        self.jitter = jitter

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("area_ratio", "aspect_ratio", "jitter")

    def _generate(self, image, source, rng):
        out, label, _ = cutpaste(image, rng, area_ratio=self.area_ratio, aspect_ratio=self.aspect_ratio, jitter=self.jitter)
        return out, label


class CutPasteScar(_SyntheticAnomalyTransform):
    """CutPaste-Scar as a transform: a thin, rotated, jittered rectangle; label on its footprint.

    See :func:`nsa_augment.baselines.cutpaste_scar`.
    """

    uses_source = False

    class InitSchema(BaseTransformInitSchema):
        width: tuple[int, int]
        height: tuple[int, int]
        rotation: tuple[float, float]
        jitter: float

        @model_validator(mode="after")
        def _ranges(self):
            for name in ("width", "height"):
                lo, hi = getattr(self, name)
                if not 1 <= lo <= hi:
                    raise ValueError(f"{name} must satisfy 1 <= lo <= hi, got {(lo, hi)}")
            if self.rotation[0] > self.rotation[1]:
                raise ValueError(f"rotation must satisfy lo <= hi, got {self.rotation}")
            if not 0 <= self.jitter <= 1:
                raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")
            return self

    def __init__(self, width: tuple[int, int] = (2, 16), height: tuple[int, int] = (10, 25),
                 rotation: tuple[float, float] = (-45.0, 45.0), jitter: float = 0.1, p: float = 0.5):
        super().__init__(p=p)
        self.width = width
        self.height = height
        self.rotation = rotation
        self.jitter = jitter

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("width", "height", "rotation", "jitter")

    def _generate(self, image, source, rng):
        out, label, _ = cutpaste_scar(image, rng, width=self.width, height=self.height, rotation=self.rotation,
                                      jitter=self.jitter)
        return out, label


class DraemAnomaly(_SyntheticAnomalyTransform):
    """DRAEM-style anomalies (Zavrtanik et al., ICCV 2021) as a transform: binary label on the Perlin region.

    The anomaly source (a texture, e.g. from a folder of DTD-like images, or
    another normal image) comes under ``source_key`` like NSA's; without one
    the image's own content is used.  See :func:`nsa_augment.baselines.draem_anomaly`.
    """

    class InitSchema(BaseTransformInitSchema):
        scale_exponents: tuple[int, int]
        threshold: float
        rotation: tuple[float, float]
        beta_range: tuple[float, float]
        augmenters: int
        source_key: str
        missing_source: Literal["self", "error"]

        @model_validator(mode="after")
        def _ranges(self):
            lo, hi = self.scale_exponents
            if not 0 <= lo < hi <= 10:
                raise ValueError(f"scale_exponents must satisfy 0 <= lo < hi <= 10, got {self.scale_exponents}")
            b0, b1 = self.beta_range
            if not 0 <= b0 <= b1 <= 1:
                raise ValueError(f"beta_range must satisfy 0 <= lo <= hi <= 1, got {self.beta_range}")
            if not 0 <= self.augmenters <= 10:
                raise ValueError(f"augmenters must lie in 0..10, got {self.augmenters}")
            return self

    def __init__(self, scale_exponents: tuple[int, int] = (0, 6), threshold: float = 0.5,
                 rotation: tuple[float, float] = (-90.0, 90.0), beta_range: tuple[float, float] = (0.0, 0.8),
                 augmenters: int = 3, source_key: str = "nsa_source",
                 missing_source: Literal["self", "error"] = "self", p: float = 0.5):
        super().__init__(p=p)
        self.scale_exponents = scale_exponents
        self.threshold = threshold
        self.rotation = rotation
        self.beta_range = beta_range
        self.augmenters = augmenters
        self.source_key = source_key
        self.missing_source = missing_source

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale_exponents", "threshold", "rotation", "beta_range", "augmenters", "source_key", "missing_source")

    def _generate(self, image, source, rng):
        out, label, _ = draem_anomaly(image, source, rng, scale_exponents=self.scale_exponents, threshold=self.threshold,
                                      rotation=self.rotation, beta_range=self.beta_range, augmenters=self.augmenters)
        return out, label


def _combine(mask: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The incoming mask with the new label max-combined in, as float32 of the mask's shape."""
    if mask.shape[:2] != label.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {label.shape}")
    lab = label if mask.ndim == 2 else label[:, :, None]
    return np.maximum(mask.astype(np.float32), lab)
