"""NSA: natural synthetic anomalies (Schlüter et al., ECCV 2022) — config, presets, sampling, blending, labels.

:func:`plan_anomaly` draws a frozen :class:`NSAPlan` (all randomness), :func:`render_anomaly`
renders it (pure pixel work), :func:`synthesize` does both.  FPI, PII and the NSA paper's
CutPaste variant are settings of this generator (:mod:`nsa_augment.methods.registry`).
"""

from . import presets
from .config import NSAConfig
from .labels import image_label, make_label
from .objects import object_mask
from .sampling import PatchGeometry
from .synthesis import (
    NSAPlan,
    SynthesisInfo,
    plan_anomaly,
    plan_volume_anomaly,
    render_anomaly,
    render_volume_anomaly,
    synthesize,
    synthesize_volume,
)

__all__ = [
    "NSAConfig", "NSAPlan", "PatchGeometry", "SynthesisInfo", "image_label", "make_label", "object_mask",
    "plan_anomaly", "plan_volume_anomaly", "presets", "render_anomaly", "render_volume_anomaly", "synthesize",
    "synthesize_volume",
]
