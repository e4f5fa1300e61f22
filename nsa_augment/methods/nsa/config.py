"""The NSA generator's settings as one immutable, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...intensity import check_intensity_range
from ...validation import check_choice, check_pair, freeze, is_finite, is_integer
from ..plan import Config

BLEND_MODES = ("poisson", "paste", "alpha")
GRADIENTS = ("normal", "mixed", "mix", "interpolated")
POISSON_FORMULATIONS = ("exact", "opencv")
LABEL_MODES = ("binary", "continuous", "intensity", "logistic")
RESCALE_CLIPS = ("full", "reference")

#: Upper bounds that keep a typo (``num_patches=10**9``) from turning into a multi-GB allocation
#: or an endless loop; far above anything the method uses (the paper: 3-4 patches, 200 attempts).
MAX_PATCHES = 100
MAX_ATTEMPTS = 100_000


@dataclass(frozen=True)
class NSAConfig(Config):
    """Everything that defines a synthetic-anomaly generator (see ``docs/algorithm.md``).

    Sizes are *half-widths* as fractions of the destination's axis length, per
    axis ``(rows, cols)``, as in the NSA paper.

    Attributes
    ----------
    num_patches : int
        Maximum patches per example: the first is always attempted, each further
        one with probability 1/2.
    width_bounds : ((float, float), (float, float)) or three pairs
        ``((min_rows, max_rows), (min_cols, max_cols))`` half-width fractions,
        0 < min <= max <= 0.5; a volume config has a pair for (slices, rows,
        cols) and works only with the volume functions (:attr:`dims`).
    gamma : (shape, scale, lower_bound) or None
        Half-width fraction ``lower_bound + Gamma(shape, scale)`` clipped to the
        bounds; None draws uniformly between the bounds.
    rescale : bool
        Resize the cut patch by ``clip(N(1, 0.5), *rescale_bounds)`` (bilinear, aspect kept).
    rescale_bounds : (float, float)
        ``(0.7, 1.3)`` for MVTec objects, ``(0.5, 2)`` for textures.
    rescale_clip : {"full", "reference"}
        How the resized size is bounded.  "full" (default, the paper's intent):
        the patch's full size stays within twice the half-width bounds.
        "reference": the reference code's quirk of clipping the full size with
        the *half-width* pixel bounds (resized patches end up at most half as
        large); kept for exact reproduction.
    shift : bool
        Place the patch at a random destination position (else where it was cut).
    blend : {"poisson", "paste", "alpha"}
        Poisson image editing, hard paste (CutPaste-like) or alpha blending with
        the factor ``f`` (FPI-like).
    gradients : {"normal", "mixed", "mix", "interpolated"}
        Guidance for ``blend="poisson"``: source gradients (objects), mixed
        gradients (textures), a coin flip between the two per example, or
        ``f * source + (1-f) * destination`` gradients (PII).
    poisson : {"exact", "opencv"}
        How ``blend="poisson"`` solves.  "exact" (default): the 5-point system on
        the whole patch rectangle, source gradients up to its edge, mixed
        gradients chosen per edge by magnitude, rounded.  "opencv": what the
        reference's ``cv2.seamlessClone`` computes (the patch's outer 2 px stay the
        destination's, source gradients only from 4 px inside the edge, mixed
        gradients chosen per pixel by ``|gx - gy|``, results truncated, patches
        under 50 solved pixels skipped); see ``docs/algorithm.md``.
    object_masks : tuple of (background_level, threshold) pairs, or None
        Object (foreground) masks: a pixel is object where
        ``|mean over channels - level| > threshold`` for every pair (0..255
        scale), then a 7x7 median removes grain.
    min_object : float
        With object masks, a source patch is accepted when more than this
        fraction of it is object.
    min_overlap : float
        With object masks, a destination position is accepted when the overlap
        of source and destination object exceeds this fraction of the source object.
    label : {"binary", "continuous", "intensity", "logistic"}
        Label map written for the example (see ``nsa_augment.labels``).
    logistic : (k, x0)
        Parameters of the logistic label ``1 / (1 + exp(-k (L - x0)))``.
    tol : float
        A pixel counts as changed when the mean absolute change over channels
        exceeds ``tol`` (0..255 scale).
    factor_range : (float, float)
        ``f ~ U(*factor_range)`` per example, used by continuous labels, alpha
        blending and interpolated gradients.
    same_source : bool
        Cut the patch from the destination itself (CutPaste) instead of the source image.
    max_attempts : int
        Position draws per patch before it is skipped.
    intensity_range : None, "dtype", "image" or (lo, hi)
        How pixel values map to the 0..255 scale of ``object_masks``, ``tol`` and
        ``logistic`` (:mod:`nsa_augment.intensity`): None reads uint8 as 0..255,
        float32 as [0, 1] and 16-bit images by their own min..max.
    """

    num_patches: int = 1
    width_bounds: tuple[tuple[float, float], tuple[float, float]] = ((0.05, 0.2), (0.05, 0.2))
    gamma: tuple[float, float, float] | None = None
    rescale: bool = True
    rescale_bounds: tuple[float, float] = (0.7, 1.3)
    rescale_clip: str = "full"
    shift: bool = True
    blend: str = "poisson"
    gradients: str = "normal"
    poisson: str = "exact"
    object_masks: tuple[tuple[float, float], ...] | None = None
    min_object: float = 0.25
    min_overlap: float = 0.25
    label: str = "binary"
    logistic: tuple[float, float] = (1 / 6, 20.0)
    tol: float = 1.0
    factor_range: tuple[float, float] = (0.05, 0.95)
    same_source: bool = False
    max_attempts: int = 200
    intensity_range: str | tuple[float, float] | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        for f in ("width_bounds", "gamma", "rescale_bounds", "object_masks", "logistic", "factor_range", "intensity_range"):
            object.__setattr__(self, f, freeze(getattr(self, f)))
        if not is_integer(self.num_patches) or not 1 <= self.num_patches <= MAX_PATCHES:
            raise ValueError(f"num_patches must be an integer in 1..{MAX_PATCHES}, got {self.num_patches!r}")
        for f in ("rescale", "shift", "same_source"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"{f} must be True or False, got {getattr(self, f)!r}")
        wb = self.width_bounds
        if not (isinstance(wb, tuple) and len(wb) in (2, 3) and all(isinstance(b, tuple) and len(b) == 2 for b in wb)):
            raise ValueError("width_bounds must be ((min_rows, max_rows), (min_cols, max_cols)) for images, or three "
                             f"such pairs (slices, rows, cols) for volumes, got {wb!r}")
        for (lo, hi), axis in zip(wb, ("rows", "cols") if len(wb) == 2 else ("slices", "rows", "cols")):
            if not (is_finite(lo) and is_finite(hi) and 0.0 < lo <= hi <= 0.5):
                raise ValueError(f"width_bounds for {axis} must satisfy 0 < min <= max <= 0.5, got ({lo}, {hi})")
        if self.gamma is not None:
            g = self.gamma
            if not (isinstance(g, tuple) and len(g) == 3 and all(is_finite(v) for v in g) and g[0] > 0 and g[1] > 0
                    and g[2] >= 0):
                raise ValueError(f"gamma must be (shape > 0, scale > 0, lower_bound >= 0), got {self.gamma!r}")
        lo, hi = check_pair(self.rescale_bounds, "rescale_bounds")
        if not 0 < lo <= hi:
            raise ValueError(f"rescale_bounds must satisfy 0 < lo <= hi, got {self.rescale_bounds!r}")
        check_choice(self.rescale_clip, RESCALE_CLIPS, "rescale_clip")
        check_choice(self.blend, BLEND_MODES, "blend")
        check_choice(self.gradients, GRADIENTS, "gradients")
        check_choice(self.poisson, POISSON_FORMULATIONS, "poisson")
        if self.poisson != "exact" and self.blend != "poisson":
            raise ValueError(f"poisson={self.poisson!r} applies to blend='poisson' only, got blend={self.blend!r}")
        check_choice(self.label, LABEL_MODES, "label")
        if self.object_masks is not None:
            if not isinstance(self.object_masks, tuple) or len(self.object_masks) == 0:
                raise ValueError("object_masks must be None or a non-empty sequence of (background_level, threshold) pairs")
            for pair in self.object_masks:
                lvl, thr = check_pair(pair, "object_masks entry")
                if not (0 <= lvl <= 255 and 0 <= thr <= 255):
                    raise ValueError(f"object_masks levels and thresholds must lie in 0..255, got {pair!r}")
            if self.same_source:
                raise ValueError("object_masks cannot be combined with same_source")
        for f in ("min_object", "min_overlap"):
            v = getattr(self, f)
            if not (is_finite(v) and 0.0 <= v < 1.0):
                raise ValueError(f"{f} must lie in [0, 1), got {v!r}")
        k, x0 = check_pair(self.logistic, "logistic")
        if k <= 0:
            raise ValueError(f"logistic k must be > 0, got {k}")
        if not (is_finite(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        f0, f1 = check_pair(self.factor_range, "factor_range")
        if not 0.0 <= f0 <= f1 <= 1.0:
            raise ValueError(f"factor_range must satisfy 0 <= lo <= hi <= 1, got {self.factor_range!r}")
        if not is_integer(self.max_attempts) or not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be an integer in 1..{MAX_ATTEMPTS}, got {self.max_attempts!r}")
        check_intensity_range(self.intensity_range)
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")

    @property
    def dims(self) -> int:
        """2 for an image config, 3 for a volume config (the number of ``width_bounds`` pairs)."""
        return len(self.width_bounds)
