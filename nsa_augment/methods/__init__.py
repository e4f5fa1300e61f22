"""Every anomaly generator under one protocol: a frozen config, a frozen plan, a pure render.

``methods.get("cutpaste")`` gives a :class:`~nsa_augment.methods.registry.Method`;
``methods.generator(name, preset)`` a function ``(destination, source, rng) -> (image, label, plan)``.
The NSA generator lives in :mod:`nsa_augment.methods.nsa`; CutPaste, CutPaste-Scar and
DRAEM-style anomalies in :mod:`~nsa_augment.methods.cutpaste` and :mod:`~nsa_augment.methods.draem`.
"""

from .cutpaste import CutPasteConfig, CutPastePlan, ScarConfig, ScarPlan, cutpaste, cutpaste_scar
from .draem import DraemConfig, DraemPlan, draem_anomaly
from .perlin import perlin_noise
from .plan import Config, Plan, plan_from_dict
from .registry import METHODS, NSA_FAMILY, REGISTRY, Method, config, generator, get, nsa_config

__all__ = [
    "METHODS", "NSA_FAMILY", "REGISTRY", "Config", "CutPasteConfig", "CutPastePlan", "DraemConfig", "DraemPlan",
    "Method", "Plan", "ScarConfig", "ScarPlan", "config", "cutpaste", "cutpaste_scar", "draem_anomaly", "generator",
    "get", "nsa_config", "perlin_noise", "plan_from_dict",
]
