"""The NSA generator: :func:`plan_anomaly` draws a frozen plan, :func:`render_anomaly` renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...intensity import intensity_range
from ...numba_cache import expect_synthesis
from ...poisson.blas import single_threaded_blas
from ...validation import as_dhwc, as_hwc, check_generator, check_image, check_same_kind, check_volume
from ..plan import Plan, check_plan_shape
from . import presets
from .blending import (
    blend_patch,
    blend_patch_opencv,
    extract_mask,
    extract_patch,
    opencv_skip_reason,
)
from .config import NSAConfig
from .labels import MEDIAN_SIZE, _label, median_keeps
from .objects import spatial_object_mask
from .sampling import (
    ObjectCounts,
    PatchGeometry,
    box_size,
    box_slices,
    pixel_bounds,
    rescaled_size,
    sample_destination_box,
    sample_half_width,
    sample_num_patches,
    sample_rescale,
    sample_source_box,
    unshifted_destination_box,
)


@dataclass(frozen=True)
class NSAPlan(Plan):
    """Everything random about one NSA example, and nothing else: plain numbers, no pixels.

    Attributes
    ----------
    shape : (int, int)
        ``(H, W)`` of the destination it was drawn for.
    source_shape : (int, int)
        ``(H, W)`` of the source the patches are cut from (the destination's own
        size when cutting from the destination).
    patches : tuple of PatchGeometry
        Patches placed, in order.
    skipped : tuple of str
        One reason per attempted patch that was not placed.
    num_attempted : int
        Patches attempted (1 + coin flips).
    gradients : str or None
        Guidance actually used (``"mix"`` resolved); None unless blending with Poisson.
    factor : float
        The interpolation factor ``f`` drawn for this example.
    """

    source_shape: tuple[int, int]
    patches: tuple[PatchGeometry, ...] = ()
    skipped: tuple[str, ...] = ()
    num_attempted: int = 0
    gradients: str | None = None
    factor: float = 1.0

    method: ClassVar[str] = "nsa"
    nested: ClassVar[dict] = {"patches": (PatchGeometry, True)}

    @property
    def is_anomalous(self) -> bool:
        """True if a patch was placed."""
        return bool(self.patches)


#: The name this plan had before plans were frozen (``synthesize`` returned it as ``info``).
SynthesisInfo = NSAPlan


def synthesize(
    destination: np.ndarray,
    source: np.ndarray | None,
    config: NSAConfig | str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, NSAPlan]:
    """Make one NSA training example: :func:`plan_anomaly` then :func:`render_anomaly`.

    Cuts up to ``config.num_patches`` patches from ``source``, rescales them and
    blends them one after another into ``destination`` (the source stays the
    original image), then computes the label map.

    Parameters
    ----------
    destination : ndarray, (H, W) or (H, W, C), uint8, uint16, int16 or float32
        A normal image, at least 2x2.  Never modified.  Its values are read
        through ``config.intensity_range`` (:mod:`nsa_augment.intensity`): uint8
        as 0..255, float32 as [0, 1], 16-bit images by their own min..max.
    source : ndarray or None
        Another normal image with the same dtype and channel count (any size),
        or None to cut from ``destination`` itself (also forced by
        ``config.same_source``).
    config : NSAConfig or str
        Generator settings, or a preset name (``"mvtec/carpet"``).
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    image : ndarray, same shape and dtype as ``destination``
    label : ndarray, float32, (H, W)
        See :func:`nsa_augment.make_label`.
    plan : NSAPlan
        What was rendered: patches placed, reasons for skipped ones.

    Examples
    --------
    >>> import numpy as np
    >>> from nsa_augment import synthesize
    >>> rng = np.random.default_rng(0)
    >>> dst = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> src = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> image, label, plan = synthesize(dst, src, "mvtec/carpet", rng)
    >>> image.shape, label.dtype, plan.is_anomalous
    ((64, 64, 3), dtype('float32'), True)
    """
    images = _check_inputs(destination, source, config)
    plan = _plan(images, check_generator(rng))
    image, label = _render(images, plan)
    return image.reshape(destination.shape), label, plan


def plan_anomaly(destination, source, config, rng) -> NSAPlan:
    """Sample everything random about one example, touching no pixels of the result.

    Same arguments as :func:`synthesize`.  The plan depends on the images only
    through their sizes and object masks, so it can be drawn first and
    rendered later (:func:`render_anomaly`), on this image or another of the
    same size (an Albumentations ``image2``, a replay, another device).
    """
    return _plan(_check_inputs(destination, source, config), check_generator(rng))


@dataclass(frozen=True, eq=False)
class PlannedInputs:
    """A plan with the checked inputs it was drawn from (:func:`plan_keeping_inputs`).

    :meth:`render` renders the plan on those very arrays without checking them again, and crops the
    object masks planning computed instead of computing them on every patch's boxes: what
    :func:`synthesize` does in one call, for a caller that draws and renders apart, such as the
    Albumentations transforms (sampling and applying are two steps of one call there).  Identity,
    not equality, decides whether a render is that render (:meth:`matches`).
    """

    plan: NSAPlan
    destination: np.ndarray
    source: np.ndarray | None
    config: object
    images: _Inputs

    def matches(self, destination, source, config, plan) -> bool:
        """Whether rendering ``plan`` on these arguments renders what was planned: the same objects (``is``)."""
        return (plan is self.plan and destination is self.destination and source is self.source
                and config is self.config)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """``(image, label)``, bit for bit what :func:`render_anomaly` (:func:`render_volume_anomaly`) returns."""
        image, label = _render(self.images, self.plan)
        return image.reshape(self.destination.shape), label


def plan_keeping_inputs(destination, source, config, rng, volume: bool = False) -> PlannedInputs:
    """:func:`plan_anomaly` (:func:`plan_volume_anomaly` for ``volume``), keeping the checked inputs to render it."""
    images = _check_inputs(destination, source, config, volume)
    return PlannedInputs(_plan(images, check_generator(rng)), destination, source, config, images)


def render_anomaly(destination, source, config, plan: NSAPlan) -> tuple[np.ndarray, np.ndarray]:
    """Render a plan from :func:`plan_anomaly`: deterministic, no randomness.

    ``destination`` must have the size the plan was drawn for, and ``source``
    the source size (a ``ValueError`` says which differs).  With object masks
    the label region is recomputed from these images.  Returns ``(image,
    label)`` as :func:`synthesize` does.
    """
    images = _check_inputs(destination, source, config)
    if not isinstance(plan, NSAPlan):
        raise TypeError(f"plan must be an NSAPlan from plan_anomaly, got {type(plan).__name__}")
    plan.check_shape(images.dst, "destination")
    check_plan_shape(plan.source_shape, images.src.shape[:2], "source", plan.method)
    cfg = images.cfg
    if cfg.blend == "poisson" and cfg.poisson == "opencv":
        for p in plan.patches:  # plan_anomaly skips these for this config: the plan was drawn with another
            reason = opencv_skip_reason(p.dst_size)
            if reason is not None:
                raise ValueError(f"{reason}: this plan was drawn with a config other than this poisson='opencv' "
                                 "one; render a plan with the config it was drawn with")
    image, label = _render(images, plan)
    return image.reshape(destination.shape), label


def synthesize_volume(
    destination: np.ndarray,
    source: np.ndarray | None,
    config: NSAConfig | str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, NSAPlan]:
    """Make one 3-D NSA example: cuboid patches of a source volume, rescaled and Poisson-blended in 3-D.

    The volume counterpart of :func:`synthesize`: the same sampling (per-axis
    gamma half-widths, rescale with the aspect kept, shift, object masks with the
    minimum-object and overlap rules, a 7x7x7 median), an exact 7-point Poisson
    solve on each cuboid, and 3-D labels (5x5x5 median of the change; the
    intensity median over a ball of radius 5).  Volumes are never guessed from
    array shapes: these functions take volumes, the 2-D ones images.

    Parameters
    ----------
    destination : ndarray, (D, H, W) or (D, H, W, C), uint8, uint16, int16 or float32
        A normal volume, at least 2 voxels along each axis.  Never modified.
    source : ndarray or None
        Another normal volume (any size, same dtype and channels), or None.
    config : NSAConfig or str
        A volume config (``width_bounds`` for slices, rows and cols), or a preset
        name such as ``"medical/brain-mri"``.
    rng : numpy.random.Generator

    Returns
    -------
    volume : ndarray, same shape and dtype as ``destination``
    label : ndarray, float32, (D, H, W)
    plan : NSAPlan (boxes are ``(z0, z1, y0, y1, x0, x1)``)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> brain = rng.integers(200, 900, (24, 64, 64)).astype(np.int16)
    >>> other = rng.integers(200, 900, (24, 64, 64)).astype(np.int16)
    >>> volume, label, plan = synthesize_volume(brain, other, "medical/brain-mri", rng)
    >>> volume.dtype, label.shape, len(plan.patches[0].dst_box)
    (dtype('int16'), (24, 64, 64), 6)
    """
    images = _check_inputs(destination, source, config, volume=True)
    plan = _plan(images, check_generator(rng))
    volume, label = _render(images, plan)
    return volume.reshape(destination.shape), label, plan


def plan_volume_anomaly(destination, source, config, rng) -> NSAPlan:
    """:func:`plan_anomaly` for volumes (same arguments as :func:`synthesize_volume`)."""
    return _plan(_check_inputs(destination, source, config, volume=True), check_generator(rng))


def render_volume_anomaly(destination, source, config, plan: NSAPlan) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_anomaly` for volumes: renders a plan from :func:`plan_volume_anomaly`."""
    images = _check_inputs(destination, source, config, volume=True)
    if not isinstance(plan, NSAPlan):
        raise TypeError(f"plan must be an NSAPlan from plan_volume_anomaly, got {type(plan).__name__}")
    check_plan_shape(plan.shape, images.dst.shape[:-1], "destination", plan.method)
    check_plan_shape(plan.source_shape, images.src.shape[:-1], "source", plan.method)
    volume, label = _render(images, plan)
    return volume.reshape(destination.shape), label


@dataclass(frozen=True)
class _Inputs:
    """Checked inputs of one example: the config, (H, W, C) views, intensity ranges, and whether
    source and destination are the very same image."""

    cfg: NSAConfig
    dst: np.ndarray
    src: np.ndarray
    dst_range: tuple[float, float]
    src_range: tuple[float, float]
    same: bool
    #: Planning's object masks: the destination's whole-image mask ("dst") and each placed patch's
    #: resized source mask ("patches", by ``(src_box, dst_size)``): rendering the same inputs then
    #: crops and reuses them instead of computing each patch's boxes again (identical).
    objects: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def clip(self) -> bool:
        """Float results are clipped to [0, 1] when that is their range."""
        return self.dst.dtype == np.float32 and self.dst_range == (0.0, 1.0)


#: Above this many channels an (H, W, C) image is far more likely a (D, H, W) volume passed to a 2-D function.
MAX_IMAGE_CHANNELS = 16
AXES = {2: ("rows", "cols"), 3: ("slices", "rows", "cols")}


def _check_inputs(destination, source, config, volume: bool = False) -> _Inputs:
    cfg = presets.resolve(config)
    dims = 3 if volume else 2
    if cfg.dims != dims:
        raise ValueError(
            "this config has width_bounds for 3 axes (a volume config): use synthesize_volume / plan_volume_anomaly"
            if cfg.dims == 3 else
            "volumes need width_bounds for 3 axes (slices, rows, cols), e.g. presets.get('medical/brain-mri'); "
            "this config has 2 (an image config)"
        )
    check, as_channels = (check_volume, as_dhwc) if volume else (check_image, as_hwc)
    destination = check(destination, "destination", min_size=2)
    expect_synthesis(None if volume else destination.dtype)  # which kernels a compile helper should compile
    if not volume and destination.ndim == 3 and destination.shape[2] > MAX_IMAGE_CHANNELS:
        raise ValueError(f"destination has shape {destination.shape}: an image with {destination.shape[2]} channels, "
                         "or a (D, H, W) volume? For volumes use synthesize_volume (NaturalSyntheticAnomaly3D)")
    same = source is None or cfg.same_source or source is destination
    if same:
        source = destination
    else:
        source = check(source, "source", min_size=2)
        check_same_kind(as_channels(source), as_channels(destination))
    if volume and cfg.poisson == "opencv":
        raise ValueError("poisson='opencv' reproduces cv2.seamlessClone, which is 2-D: use poisson='exact' for volumes")
    dst_range = intensity_range(destination, cfg.intensity_range)
    src_range = dst_range if same else intensity_range(source, cfg.intensity_range)
    return _Inputs(cfg, as_channels(destination), np.ascontiguousarray(as_channels(source)), dst_range, src_range, same)


def _plan(images: _Inputs, rng) -> NSAPlan:
    cfg, dst, src = images.cfg, images.dst, images.src
    shape, src_shape = dst.shape[:-1], src.shape[:-1]
    # Fixed draw order: factor, gradient coin, patch count, then per patch (axis by axis).
    factor = float(rng.uniform(*cfg.factor_range))
    gradients = cfg.gradients
    if gradients == "mix":
        gradients = ("normal", "mixed")[int(rng.integers(2))]
    gradients = gradients if cfg.blend == "poisson" else None
    num_attempted = sample_num_patches(rng, cfg.num_patches)
    common = dict(shape=shape, source_shape=src_shape, num_attempted=num_attempted, gradients=gradients, factor=factor)

    names = AXES[len(shape)]
    too_small = [name for name, dim, b in zip(names, shape, cfg.width_bounds) if pixel_bounds(dim, b)[1] < 1]
    if too_small:
        size_text = "x".join(map(str, shape))
        reason = f"{'volume' if len(shape) == 3 else 'image'} {size_text} too small: maximum patch half-width is 0 " \
                 f"px along {' and '.join(too_small)}"
        return NSAPlan(skipped=(reason,) * num_attempted, **common)

    dst_object = src_object = src_counts = None
    if cfg.object_masks is not None:
        dst_object = spatial_object_mask(dst, cfg.object_masks, intensity=images.dst_range)
        # Only the very same image may share its mask: a view of another part of it is another image.
        src_object = dst_object if images.same else spatial_object_mask(src, cfg.object_masks, intensity=images.src_range)
        src_counts = ObjectCounts(src_object)
        images.objects.update(dst=dst_object, patches={})

    opencv = cfg.blend == "poisson" and cfg.poisson == "opencv"
    patches, skipped = [], []
    min_hw = tuple(pixel_bounds(n, b)[0] for n, b in zip(src_shape, cfg.width_bounds))
    for _ in range(num_attempted):
        half = tuple(sample_half_width(rng, n, b, cfg.gamma) for n, b in zip(src_shape, cfg.width_bounds))
        if min(half) < 1:
            skipped.append(f"source {'x'.join(map(str, src_shape))} too small for this patch: its half-width "
                           f"{half} px rounds to zero")
            continue
        src_box, attempts = sample_source_box(rng, src_shape, half, min_hw, src_counts, cfg.min_object, cfg.max_attempts)
        if src_box is None:
            skipped.append(f"no source position with more than {cfg.min_object:.0%} object in {attempts} draws")
            continue
        cut = box_size(src_box)
        scale = 1.0
        if cfg.rescale:
            scale = sample_rescale(rng, cfg.rescale_bounds)
            size = rescaled_size(cut, scale, shape, cfg)
        else:
            size = tuple(min(c, n) for c, n in zip(cut, shape))
        if cfg.blend == "poisson" and size == shape:
            size = (shape[0] - 1, *shape[1:])  # the solver needs at least one boundary pixel
        if not median_keeps(size):
            # The label's median would remove the whole label: the patch would change pixels
            # that no label marks, a silently wrong training example.
            side = "x".join([str(MEDIAN_SIZE)] * len(size))
            skipped.append(f"patch {'x'.join(map(str, size))} too small for the label's {side} median: "
                           "it would change pixels that no label marks")
            continue
        src_obj_patch = extract_mask(src_object, src_box, size) if src_object is not None else None
        if cfg.shift:
            dst_box, more = sample_destination_box(
                rng, size, shape, dst_object, src_obj_patch, cfg.min_object, cfg.min_overlap, cfg.max_attempts
            )
        else:
            dst_box, more = unshifted_destination_box(
                src_box, size, shape, dst_object, src_obj_patch, cfg.min_object, cfg.min_overlap
            )
        if dst_box is None:
            skipped.append(f"no destination position with object overlap above {cfg.min_overlap:.0%} in {more} draws")
            continue
        reason = opencv_skip_reason(size) if opencv else None
        if reason is not None:
            skipped.append(reason)
            continue
        patches.append(PatchGeometry(src_box=src_box, dst_box=dst_box, scale=scale, attempts=attempts + more))
        if src_obj_patch is not None:
            images.objects["patches"][src_box, size] = src_obj_patch
    return NSAPlan(patches=tuple(patches), skipped=tuple(skipped), **common)


def _patch_region(images: _Inputs, patch: PatchGeometry) -> np.ndarray | None:
    """Where in the patch's box it may be labelled: ``source object | destination object`` (None: the whole box).

    Computed from the images being rendered, on the patch's boxes only (the object
    mask of a box equals that part of the whole-image mask, :func:`object_mask`), or, when the
    same inputs were just planned (:func:`synthesize`), from planning's work: the source patch mask
    it resized for the overlap rule and a crop of the destination's whole-image mask.
    """
    pairs = images.cfg.object_masks
    if pairs is None:
        return None
    if images.objects:  # this plan was drawn from these very inputs: its patch masks, a crop of the whole-image mask
        src_patch = images.objects["patches"][patch.src_box, patch.dst_size]
        return src_patch | images.objects["dst"][box_slices(patch.dst_box)]
    src_object = spatial_object_mask(images.src, pairs, box=patch.src_box, intensity=images.src_range)
    relative = tuple(v for n in box_size(patch.src_box) for v in (0, n))
    src_patch = extract_mask(src_object, relative, patch.dst_size)
    return src_patch | spatial_object_mask(images.dst, pairs, box=patch.dst_box, intensity=images.dst_range)


def _render(images: _Inputs, plan: NSAPlan) -> tuple[np.ndarray, np.ndarray]:
    cfg, dst = images.cfg, images.dst
    image = np.array(dst, order="C", copy=True)
    if not plan.patches:
        return image, np.zeros(dst.shape[:-1], np.float32)
    region = np.zeros(dst.shape[:-1], dtype=bool)
    render_patch = _render_patch if dst.ndim == 3 else _render_volume_patch
    with single_threaded_blas():  # one scope for the example's solves (poisson/blas.py)
        for p in plan.patches:
            patch_region = _patch_region(images, p)
            render_patch(image, images, plan, p, patch_region)
            inside = box_slices(p.dst_box)
            if patch_region is None:
                region[inside] = True
            else:
                region[inside] |= patch_region
    label = _label(dst, image, region, cfg.label, tol=cfg.tol, factor=plan.factor, logistic=cfg.logistic,
                   intensity=images.dst_range, boxes=[p.dst_box for p in plan.patches])
    return image, label


def _render_patch(image, images: _Inputs, plan: NSAPlan, p: PatchGeometry, patch_region) -> None:
    cfg = images.cfg
    if cfg.blend == "poisson" and cfg.poisson == "opencv":
        patch = extract_patch(images.src, p.src_box, p.dst_size, margin=0)
        blend_patch_opencv(image, patch, p.dst_box, gradients=plan.gradients, factor=plan.factor, truncate=True,
                           clip=images.clip)
    else:
        patch = extract_patch(images.src, p.src_box, p.dst_size, margin=1)
        blend_patch(image, patch, p.dst_box, blend=cfg.blend, gradients=plan.gradients or "normal",
                    factor=plan.factor, paste_mask=patch_region, clip=images.clip)


def _render_volume_patch(volume, images: _Inputs, plan: NSAPlan, p: PatchGeometry, patch_region) -> None:
    cfg = images.cfg
    patch = extract_patch(images.src, p.src_box, p.dst_size, margin=1)
    blend_patch(volume, patch, p.dst_box, blend=cfg.blend, gradients=plan.gradients or "normal", factor=plan.factor,
                paste_mask=patch_region, clip=images.clip)
