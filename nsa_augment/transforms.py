"""Synthetic anomalies as Albumentations transforms: NSA and its peers under one interface.

``NaturalSyntheticAnomaly`` (NSA, and through its config FPI, PII and the NSA paper's CutPaste
variant), ``CutPaste``, ``CutPasteScar`` and ``DraemAnomaly`` share one design, Albumentations'
own: the parameter hook draws the method's frozen *plan* (no pixels) and ``apply`` renders it on
whatever image it is handed.  So every image target gets the anomaly rendered on itself
(``image2``, replays, ``images`` batches), replay records hold plans, and the label goes to
``mask`` alone (other mask targets are left as they are).

A patch source comes at call time under ``source_key`` (default ``nsa_source``), like
Albumentations' metadata; the plan records which source was used (the array, or an index into a
list), so a replay needs the same ``nsa_source``.  A transform's arguments are its config's fields
(:class:`~nsa_augment.NSAConfig`, :class:`~nsa_augment.methods.CutPasteConfig`, ...), declared once
there and validated there; a misspelled one is a ``TypeError`` naming the closest valid one.

Works with albumentations 2.0.8 (MIT) and AlbumentationsX >= 2.4.3, which share the import name
``albumentations`` but differ in their parameter hook (``get_params_dependent_on_data`` vs
``sample_parameters``) and in how parameters reach ``apply``; the base class adapts to both.
"""

from __future__ import annotations

import dataclasses
import inspect
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import DualTransform
from albumentations.core.type_definitions import Targets

from .methods import registry
from .methods.cutpaste import CutPasteConfig, ScarConfig
from .methods.draem import DraemConfig
from .methods.nsa import NSAConfig, presets, render_volume_anomaly
from .methods.nsa.synthesis import plan_keeping_inputs
from .methods.plan import check_field_names, resolve_config
from .validation import is_finite

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
MISSING_SOURCE = ("self", "error")


def decorrelated_seed(seed: int, tag: int = _STREAM_TAG) -> int:
    """A 32-bit seed derived from ``(seed, tag)`` for a transform's own stream."""
    return int(np.random.SeedSequence([int(seed) % 2**64, tag]).generate_state(1)[0])


# Declared explicitly: AlbumentationsX dispatches only the targets a transform declares.
_TARGETS = tuple(
    getattr(Targets, t)
    for t in ("IMAGE", "IMAGES", "MASK", "MASKS", "BBOXES", "KEYPOINTS", "VOLUME", "VOLUMES", "MASK3D", "MASKS3D")
    if hasattr(Targets, t)
)


def _config_defaults(config_type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config_type)}


class _AnomalyTransform(DualTransform):
    """Shared machinery: arguments from the config, plan sampling, rendering per target, both Albumentations.

    Subclasses set ``method`` (a :mod:`~nsa_augment.methods.registry` name), ``config_type`` and ``uses_source``.
    """

    _targets = _TARGETS
    method: ClassVar[str] = ""
    config_type: ClassVar[type] = type(None)
    #: Whether the method may take its patches from a second image (else from the image itself).
    uses_source: ClassVar[bool] = True
    #: 2 or 3 for NSA transforms (the config's ``dims`` must match), None for the peers.
    dims: ClassVar[int | None] = None
    #: What sampling kept for rendering its plans in the same call (``Method.plan_keeping_inputs``): set by
    #: ``_sample``, used and emptied by ``_prepare``; a replay finds it empty and renders from the plan alone.
    _kept: Sequence[Any] = ()
    #: For an ``images`` target: the container sampled and the item objects planned (None otherwise).
    _kept_items: tuple | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.method:
            return

        # One __init__ per class whose signature lists the config's fields, so that introspection
        # (IDEs, inspect.signature, AlbumentationsX's applied-config keys) sees every argument.
        def __init__(self, config=None, **kwargs):
            _AnomalyTransform._setup(self, config, kwargs)

        P = inspect.Parameter
        params = [P("self", P.POSITIONAL_OR_KEYWORD), P("config", P.POSITIONAL_OR_KEYWORD, default=None),
                  P("p", P.KEYWORD_ONLY, default=0.5)]
        params += [P(name, P.KEYWORD_ONLY, default=d) for name, d in cls._extra_args().items()]
        params += [P(name, P.KEYWORD_ONLY, default=d) for name, d in _config_defaults(cls.config_type).items()]
        __init__.__signature__ = inspect.Signature(params)
        __init__.__qualname__ = f"{cls.__name__}.__init__"
        __init__.__doc__ = (f"``config`` (a {cls.config_type.__name__}) and/or its fields as keywords; ``p`` is the "
                            "probability of applying.")
        cls.__init__ = __init__

    def __getstate__(self) -> dict[str, Any]:
        # What sampling kept belongs to one call: never pickled with the transform (a DataLoader pickles
        # its dataset's transforms for its workers), even after a call that raised before applying.
        parent = getattr(super(), "__getstate__", None)  # AlbumentationsX's; Python >= 3.11's default
        state = dict((parent() if parent is not None else self.__dict__) or {})  # (None: an empty instance dict)
        state.pop("_kept", None)
        state.pop("_kept_items", None)
        return state

    @classmethod
    def _extra_args(cls) -> dict[str, Any]:
        return {"source_key": "nsa_source", "missing_source": "self"} if cls.uses_source else {}

    def _setup(self, config, kwargs: dict[str, Any]) -> None:
        owner = f"{type(self).__name__}()"
        p = kwargs.pop("p", 0.5)
        extra = {name: kwargs.pop(name, default) for name, default in self._extra_args().items()}
        kwargs.pop("strict", None)  # Albumentations' flag; unknown arguments are always an error here
        check_field_names(kwargs, [*_config_defaults(self.config_type), "p", *self._extra_args()], owner)
        self._config = resolve_config(config, self.config_type, kwargs, owner)
        if self.dims is not None and self._config.dims != self.dims:
            raise ValueError(f"{owner} takes a config with width_bounds for {self.dims} axes, got {self._config.dims}: "
                             + ("use NaturalSyntheticAnomaly3D for volumes" if self.dims == 2 else
                                "use a volume config such as presets.get('medical/brain-mri')"))
        if not (is_finite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        super().__init__(p=float(p))
        if self.uses_source:
            if not isinstance(extra["source_key"], str) or not extra["source_key"]:
                raise ValueError(f"source_key must be a non-empty string, got {extra['source_key']!r}")
            if extra["missing_source"] not in MISSING_SOURCE:
                raise ValueError(f"missing_source must be one of {MISSING_SOURCE}, got {extra['missing_source']!r}")
            self.source_key = extra["source_key"]
            self.missing_source = extra["missing_source"]
            # The source is call data, not a target: declared so that Compose(strict=True) accepts it.
            self._available_keys.add(self.source_key)

    @property
    def config(self):
        """The method's settings (a frozen, validated config)."""
        return self._config

    def _method(self) -> registry.Method:
        return registry.get(self.method)

    def _takes_source(self) -> bool:
        return self.uses_source and not getattr(self._config, "same_source", False)

    # --- serialisation ------------------------------------------------------------------------------

    @classmethod
    def get_class_fullname(cls) -> str:
        return f"nsa_augment.{cls.__name__}"

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*_config_defaults(self.config_type), *self._extra_args())

    def get_transform_init_args(self) -> dict[str, Any]:
        # Every field under its own name (the base class would drop empty values such as None).
        args = self._config.to_dict()
        args.update({name: getattr(self, name) for name in self._extra_args()})
        return args

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(None if seed is None else decorrelated_seed(seed, self._stream_tag()))

    @classmethod
    def _stream_tag(cls) -> int:
        return zlib.crc32(cls.__name__.encode())

    def add_targets(self, additional_targets: dict[str, str]) -> None:
        super().add_targets(additional_targets)
        # Extra image targets get the anomaly rendered on themselves; extra *mask* targets are the
        # caller's (a segmentation, say): the label goes to ``mask`` alone.
        for key, kind in additional_targets.items():
            if kind in ("mask", "masks", "mask3d", "masks3d") and key in self._key2func:
                self._key2func[key] = self._unchanged

    @staticmethod
    def _unchanged(value, *args: Any, **params: Any):
        return value

    # --- sampling (all randomness) -------------------------------------------------------------------

    def _sample(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if any(key in data for key in ("volume", "volumes", "mask3d", "masks3d")):
            raise ValueError(
                f"{type(self).__name__} does not support volumes: it blends 2-D patches; pass slices as 'images' "
                "(independent anomalies) or use a 2-D pipeline"
            )
        if "image" not in data and "images" not in data:
            raise ValueError(f"{type(self).__name__} needs an 'image' (or 'images') target")
        method = self._method()
        source = data.get(self.source_key) if self._takes_source() else None
        if "images" in data and "image" not in data:
            if "masks" not in data:
                raise ValueError(self._needs_mask("masks"))
            plans, indices, kept = [], [], []
            items = list(data["images"])  # the item objects planned: rendering them again in this call reuses kept
            for item in items:
                src, index = self._pick_source(source, rng)
                plan, keep = method.plan_keeping_inputs(item, src, self._config, rng)
                plans.append(plan)
                indices.append(index)
                kept.append(keep)
            self._kept, self._kept_items = kept, (data["images"], items)
            return {"nsa_plans": plans, "nsa_source_indices": indices}
        if "mask" not in data:
            raise ValueError(self._needs_mask("mask"))
        src, index = self._pick_source(source, rng)
        plan, keep = method.plan_keeping_inputs(data["image"], src, self._config, rng)
        self._kept = [keep]
        return {"nsa_plan": plan, "nsa_source_index": index}

    def _pick_source(self, source, rng) -> tuple[np.ndarray | None, int | None]:
        """The source to cut from and how to find it again: None (the image itself), -1 (the array), or a list index."""
        if not self._takes_source():
            return None, None
        if source is None:
            if self.missing_source == "error":
                raise ValueError(
                    f"{type(self).__name__} needs a patch source: pass {self.source_key}=<array or list of arrays> "
                    "in the call, or use missing_source='self' to cut from the image itself"
                )
            return None, None
        if isinstance(source, np.ndarray):
            return source, -1
        if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
            if len(source) == 0:
                raise ValueError(f"{self.source_key} is an empty sequence: give at least one source image")
            index = int(rng.integers(len(source)))
            return source[index], index
        raise TypeError(f"{self.source_key} must be an array or a sequence of arrays, got {type(source).__name__}")

    def _needs_mask(self, key: str) -> str:
        shape = "image.shape[:2]" if key == "mask" else "(len(images),) + images[0].shape[:2]"
        return (
            f"{type(self).__name__} writes its label into the '{key}' target, which was not passed: "
            f"call the pipeline with {key}=np.zeros({shape}, np.float32)"
        )

    if IS_ALBUMENTATIONS_X:  # pragma: no cover - exercised by the AlbumentationsX CI job

        def sample_parameters(self, params, data, targets, sampling):
            return SampledParams(params=self._sample(data, sampling.random_generator))

        def apply_with_params(self, sampled_params, *args: Any, **kwargs: Any):
            extra = self._prepare(sampled_params.params, kwargs)
            if extra:
                sampled_params = dataclasses.replace(sampled_params, params={**sampled_params.params, **extra})
            return super().apply_with_params(sampled_params, *args, **kwargs)

    else:

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            return self._sample(data, self.random_generator)

        def apply_with_params(self, params: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
            extra = self._prepare(params, kwargs)
            return super().apply_with_params({**params, **extra} if extra else params, *args, **kwargs)

    # --- rendering (pure: a function of the plan and the images of this call) -------------------------

    def _prepare(self, params, data: dict[str, Any]) -> dict[str, Any]:
        """Call-time values for ``apply*`` (never part of a replay record): the sources, and the primary renders.

        ``image`` (or ``images``) is rendered here once, so that its label is at hand for ``mask``
        whatever order the targets come in; ``apply`` reuses the render for that very array.
        """
        try:
            return self._prepare_renders(params, data)
        finally:
            self._kept, self._kept_items = (), None  # what sampling kept for these renders: not held past the call

    def _prepare_renders(self, params, data: dict[str, Any]) -> dict[str, Any]:
        if params.get("nsa_plan") is not None:
            source = self._resolve_source(data, params["nsa_source_index"])
            image = data.get("image")
            rendered = None if image is None else (image, *self._render(image, source, params["nsa_plan"]))
            return {"nsa_source": source, "nsa_rendered": rendered}
        if params.get("nsa_plans") is not None:
            sources = [self._resolve_source(data, i) for i in params["nsa_source_indices"]]
            images = data.get("images")
            if images is None or len(images) != len(params["nsa_plans"]):
                raise ValueError(f"{type(self).__name__}: the plans were drawn for {len(params['nsa_plans'])} images, "
                                 f"got {0 if images is None else len(images)}")
            # Iterating an array of images makes new views each time: the ones planned, if these are the images planned.
            items = self._kept_items[1] if self._kept_items is not None and self._kept_items[0] is images else images
            outs = [self._render(img, src, plan) for img, src, plan in zip(items, sources, params["nsa_plans"])]
            return {"nsa_sources": sources, "nsa_rendered_batch": (images, [o[0] for o in outs], [o[1] for o in outs])}
        return {}

    def _resolve_source(self, data: dict[str, Any], index: int | None) -> np.ndarray | None:
        if index is None:
            return None
        source = data.get(self.source_key)
        if source is None:
            raise ValueError(
                f"{type(self).__name__}'s plan was drawn with a patch source from '{self.source_key}': pass the "
                f"same {self.source_key}=... again (e.g. to ReplayCompose.replay) to render it"
            )
        if index == -1:
            if not isinstance(source, np.ndarray):
                raise TypeError(f"{self.source_key}: the plan was drawn from one array, got {type(source).__name__}")
            return source
        if isinstance(source, np.ndarray) or not 0 <= index < len(source):
            raise ValueError(f"{self.source_key}: the plan was drawn from item {index} of a list of sources; pass that list")
        return source[index]

    def _render(self, image: np.ndarray, source: np.ndarray | None, plan) -> tuple[np.ndarray, np.ndarray]:
        return self._method().render(image, source, self._config, plan, self._kept_for(plan))

    def _kept_for(self, plan):
        """What sampling kept for ``plan`` in this call (checked inputs, object masks), or None (a replay)."""
        return next((k for k in self._kept if k is not None and k.plan is plan), None)

    def apply(self, img: np.ndarray, nsa_plan=None, nsa_source=None, nsa_rendered=None, **params: Any) -> np.ndarray:
        if nsa_plan is None:
            return img
        if nsa_rendered is not None and img is nsa_rendered[0]:
            return nsa_rendered[1]
        return self._render(img, nsa_source, nsa_plan)[0]

    def apply_to_mask(self, mask: np.ndarray, nsa_rendered=None, **params: Any) -> np.ndarray:
        if nsa_rendered is None:
            return mask
        return _combine(mask, nsa_rendered[2])

    def apply_to_images(self, images, nsa_plans=None, nsa_sources=None, nsa_rendered_batch=None, **params: Any):
        if nsa_plans is None:
            return images
        if nsa_rendered_batch is not None and images is nsa_rendered_batch[0]:
            return np.stack(nsa_rendered_batch[1])
        return np.stack([self._render(img, src, plan)[0] for img, src, plan in zip(images, nsa_sources, nsa_plans)])

    def apply_to_masks(self, masks, nsa_rendered_batch=None, **params: Any):
        if nsa_rendered_batch is None:  # a single image: other masks are not ours to change
            return masks
        return np.stack([_combine(m, lab) for m, lab in zip(masks, nsa_rendered_batch[2])])

    def apply_to_bboxes(self, bboxes, *args: Any, **params: Any):
        return bboxes

    def apply_to_keypoints(self, keypoints, *args: Any, **params: Any):
        return keypoints


class NaturalSyntheticAnomaly(_AnomalyTransform):
    """Blend natural synthetic anomalies (NSA) into the image and write their label into ``mask``.

    Arguments: an :class:`~nsa_augment.NSAConfig` and/or its fields as keywords
    (defaults as there); :meth:`from_preset` starts from the paper's per-class
    table.  ``p``, ``source_key`` and ``missing_source`` as for every anomaly transform.

    The patch source comes at call time under ``source_key`` (like
    Albumentations' FDA/HistogramMatching metadata): one array, or a sequence
    to pick from with the transform's own RNG.  Without it the patch is cut
    from the image itself (``missing_source="self"``: each image target from
    itself) or an error is raised (``missing_source="error"``).

    Targets: image and extra image targets (the plan rendered on each), mask
    (the label map, float32, max-combined with the incoming mask; other mask
    targets are left unchanged), images + masks (one independent anomaly per
    item), bboxes and keypoints (unchanged).  Volumes are rejected.

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

    method = "nsa"
    config_type = NSAConfig
    dims = 2

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> NaturalSyntheticAnomaly:
        """The transform for a preset (``"mvtec/bottle"``, ``"chestxray"``, ...), with field overrides and ``p`` etc."""
        return cls(presets.get(name), **overrides)

    @classmethod
    def from_config(cls, config: NSAConfig, **kwargs: Any) -> NaturalSyntheticAnomaly:
        """The transform for an :class:`NSAConfig` (plus ``p``, ``source_key``, field overrides)."""
        return cls(config, **kwargs)

    @classmethod
    def _stream_tag(cls) -> int:
        return _STREAM_TAG


class NaturalSyntheticAnomaly3D(NaturalSyntheticAnomaly):
    """NSA in 3-D on Albumentations' volume targets: the anomaly into ``volume``, its label into ``mask3d``.

    Arguments: a volume :class:`~nsa_augment.NSAConfig` (``width_bounds`` for
    slices, rows and cols, e.g. :meth:`from_preset` ``("medical/brain-mri")``)
    and/or its fields; ``p``, ``source_key`` (a source *volume*, or a list of
    them) and ``missing_source`` as for :class:`NaturalSyntheticAnomaly`.

    Targets: ``volume`` (D, H, W) or (D, H, W, C), any dtype the generator
    takes; ``mask3d`` (D, H, W), the label max-combined in (other 3-D masks are
    left as they are).  See :func:`~nsa_augment.synthesize_volume`.

    Examples
    --------
    >>> import numpy as np, albumentations as A
    >>> from nsa_augment import NaturalSyntheticAnomaly3D
    >>> rng = np.random.default_rng(0)
    >>> brain, other = (rng.integers(200, 900, (16, 48, 48)).astype(np.int16) for _ in range(2))
    >>> t = NaturalSyntheticAnomaly3D.from_preset("medical/brain-mri", p=1.0)
    >>> out = A.Compose([t], seed=0)(volume=brain, mask3d=np.zeros((16, 48, 48), np.float32), nsa_source=other)
    >>> out["volume"].dtype, out["mask3d"].shape
    (dtype('int16'), (16, 48, 48))
    """

    dims = 3
    # AlbumentationsX sends a DualTransform's volume to apply_to_images (slice by slice) unless told otherwise.
    _target_apply_methods: ClassVar[dict[str, str]] = {"volume": "apply_to_volume", "mask3d": "apply_to_mask3d"}

    def _sample(self, data: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if "volume" not in data:
            raise ValueError("NaturalSyntheticAnomaly3D needs a 'volume' target, (D, H, W) or (D, H, W, C); "
                             "for 2-D images use NaturalSyntheticAnomaly")
        if "mask3d" not in data:
            raise ValueError("NaturalSyntheticAnomaly3D writes its label into the 'mask3d' target, which was not "
                             "passed: call the pipeline with mask3d=np.zeros(volume.shape[:3], np.float32)")
        source = data.get(self.source_key) if self._takes_source() else None
        src, index = self._pick_source(source, rng)
        keep = plan_keeping_inputs(data["volume"], src, self._config, rng, volume=True)
        self._kept = [keep]
        return {"nsa_plan": keep.plan, "nsa_source_index": index}

    def _prepare_renders(self, params, data: dict[str, Any]) -> dict[str, Any]:
        if params.get("nsa_plan") is None:
            return {}
        source = self._resolve_source(data, params["nsa_source_index"])
        volume = data.get("volume")
        rendered = None if volume is None else (volume, *self._render(volume, source, params["nsa_plan"]))
        return {"nsa_source": source, "nsa_rendered": rendered}

    def _render(self, volume: np.ndarray, source: np.ndarray | None, plan) -> tuple[np.ndarray, np.ndarray]:
        kept = self._kept_for(plan)
        if kept is not None and kept.matches(volume, source, self._config, plan):
            return kept.render()
        return render_volume_anomaly(volume, source, self._config, plan)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img  # 2-D image targets are not this transform's

    def apply_to_volume(self, volume, nsa_plan=None, nsa_source=None, nsa_rendered=None, **params: Any):
        if nsa_plan is None:
            return volume
        if nsa_rendered is not None and volume is nsa_rendered[0]:
            return nsa_rendered[1]
        return self._render(volume, nsa_source, nsa_plan)[0]

    def apply_to_mask3d(self, mask3d, nsa_rendered=None, **params: Any):
        if nsa_rendered is None:
            return mask3d
        return _combine(mask3d, nsa_rendered[2])

    def apply_to_mask(self, mask, **params: Any):
        return mask


class CutPaste(_AnomalyTransform):
    """CutPaste (Li et al., CVPR 2021) as a transform: label 1 on the pasted rectangle.

    Arguments: a :class:`~nsa_augment.methods.CutPasteConfig` and/or its fields.
    The patch comes from the image itself.
    """

    method = "cutpaste"
    config_type = CutPasteConfig
    uses_source = False


class CutPasteScar(_AnomalyTransform):
    """CutPaste-Scar as a transform: a thin, rotated, jittered rectangle; label on its footprint.

    Arguments: a :class:`~nsa_augment.methods.ScarConfig` and/or its fields.
    """

    method = "cutpaste-scar"
    config_type = ScarConfig
    uses_source = False


class DraemAnomaly(_AnomalyTransform):
    """DRAEM-style anomalies (Zavrtanik et al., ICCV 2021) as a transform: binary label on the Perlin region.

    Arguments: a :class:`~nsa_augment.methods.DraemConfig` and/or its fields.  The
    anomaly texture (e.g. from a folder of DTD-like images, or another normal
    image) comes under ``source_key`` like NSA's; without one the image's own
    content is used.
    """

    method = "draem"
    config_type = DraemConfig


_TRANSFORMS = {NSAConfig: NaturalSyntheticAnomaly, CutPasteConfig: CutPaste, ScarConfig: CutPasteScar,
               DraemConfig: DraemAnomaly}


def transform_for(method: str, preset: str | NSAConfig = "mvtec/carpet", **kwargs: Any) -> _AnomalyTransform:
    """The Albumentations transform of a :mod:`~nsa_augment.methods` method (``p``, ``source_key``, fields in ``kwargs``).

    Examples
    --------
    >>> t = transform_for("pii", "mvtec/tile", p=1.0)
    >>> type(t).__name__, t.config.gradients, t.config.label
    ('NaturalSyntheticAnomaly', 'interpolated', 'continuous')
    """
    config = registry.config(method, preset)
    return _TRANSFORMS[type(config)](config, **kwargs)


def _combine(mask: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The incoming mask with the new label max-combined in, as float32 of the mask's shape.

    ``label`` is the render's own float32 array, used by nothing else: where the shapes agree it
    receives the result (a fresh 1 MB array at 512 px costs its page faults: 0.15 -> 0.07 ms).
    """
    if mask.shape[: label.ndim] != label.shape or mask.ndim > label.ndim + 1:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {label.shape}")
    if mask.ndim == label.ndim:
        return np.maximum(mask, label, out=label, dtype=np.float32)  # one pass, no float32 copy of the mask
    return np.maximum(mask, label[..., None], dtype=np.float32)
