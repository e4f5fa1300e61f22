"""nsa-augment: Natural Synthetic Anomalies for self-supervised anomaly detection.

Schlüter, Tan, Hou & Kainz, "Natural Synthetic Anomalies for Self-Supervised
Anomaly Detection and Localization", ECCV 2022 (arXiv:2109.15222).
"""

from . import presets
from .config import NSAConfig
from .labels import image_label, make_label
from .objects import object_mask
from .poisson import poisson_blend, poisson_blend_reference
from .sampling import PatchGeometry
from .synthesis import SynthesisInfo, plan_anomaly, render_anomaly, synthesize

__version__ = "0.1.0"

__all__ = [
    "NaturalSyntheticAnomaly",
    "NSAConfig",
    "PatchGeometry",
    "SynthesisInfo",
    "image_label",
    "make_label",
    "object_mask",
    "poisson_blend",
    "plan_anomaly",
    "poisson_blend_reference",
    "render_anomaly",
    "presets",
    "synthesize",
    "__version__",
]

_LAZY = {"NaturalSyntheticAnomaly": ".transforms"}  # needs albumentations, an optional extra


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
