"""The synthetic-anomaly methods under one interface, by name.

``generator(name, preset)`` gives ``fn(destination, source, rng) -> (image, label, info)``;
``transform(name, preset, p=...)`` gives the matching Albumentations transform.  NSA, FPI, PII
and the NSA paper's CutPaste variant are settings of the NSA generator (the class preset's
patch geometry with another blend/label); CutPaste, CutPaste-Scar and DRAEM-style anomalies
have generators of their own (:mod:`nsa_augment.baselines`).

| name | what | label |
|---|---|---|
| ``nsa`` | the class preset (Poisson blend, normal/mixed gradients, rescale, object masks) | preset's (logistic) |
| ``nsa-binary`` | the same with binary labels | binary |
| ``cutpaste-nsa`` | NSA's patch sampling, hard paste from the same image (NSA paper's CutPaste baseline) | binary |
| ``fpi`` | a patch of another image alpha-blended in place, ``f ~ U(0.05, 0.95)`` | continuous ``f`` |
| ``pii`` | the same patch, Poisson interpolation of the gradient fields with ``f`` | continuous ``f`` |
| ``cutpaste`` | CutPaste (Li et al. 2021): jittered rectangle of the image pasted elsewhere | binary |
| ``cutpaste-scar`` | CutPaste-Scar: thin rotated jittered rectangle | binary |
| ``draem`` | DRAEM-style: Perlin-noise region filled with an augmented texture, opacity ``U(0, 0.8)`` | binary |
"""

from __future__ import annotations

from collections.abc import Callable

from . import presets
from .baselines import cutpaste, cutpaste_scar, draem_anomaly
from .config import NSAConfig
from .synthesis import synthesize

METHODS = ("nsa", "nsa-binary", "cutpaste-nsa", "fpi", "pii", "cutpaste", "cutpaste-scar", "draem")
_NSA_FAMILY = ("nsa", "nsa-binary", "cutpaste-nsa", "fpi", "pii")


def nsa_config(method: str, preset: str | NSAConfig = "mvtec/carpet") -> NSAConfig:
    """The NSA-generator settings of an NSA-family method, built on a class preset's patch geometry."""
    base = presets.get(preset) if isinstance(preset, str) else preset
    if method == "nsa":
        return base
    if method == "nsa-binary":
        return base.replace(label="binary")
    if method == "cutpaste-nsa":
        # same image as source; object masks only make sense between two images
        return base.replace(blend="paste", same_source=True, object_masks=None, label="binary")
    if method in ("fpi", "pii"):
        # in place (no shift, no rescale), one patch, interpolation factor f ~ U(0.05, 0.95)
        blend = {"fpi": dict(blend="alpha"), "pii": dict(blend="poisson", gradients="interpolated")}[method]
        return base.replace(shift=False, rescale=False, num_patches=1, label="continuous",
                            factor_range=(0.05, 0.95), **blend)
    raise ValueError(f"{method!r} is not an NSA-family method; NSA-family methods: {', '.join(_NSA_FAMILY)}")


def generator(method: str, preset: str | NSAConfig = "mvtec/carpet") -> Callable[..., tuple]:
    """``fn(destination, source, rng) -> (image, label, info)`` for a method."""
    _check(method)
    if method in _NSA_FAMILY:
        cfg = nsa_config(method, preset)
        return lambda dst, src, rng: synthesize(dst, src, cfg, rng)
    if method == "cutpaste":
        return lambda dst, src, rng: cutpaste(dst, rng)
    if method == "cutpaste-scar":
        return lambda dst, src, rng: cutpaste_scar(dst, rng)
    return draem_anomaly  # already (destination, source, rng)


def transform(method: str, preset: str | NSAConfig = "mvtec/carpet", **kwargs):
    """The Albumentations transform for a method (``p``, ``source_key`` etc. in ``kwargs``)."""
    from . import transforms as t

    _check(method)
    if method in _NSA_FAMILY:
        return t.NaturalSyntheticAnomaly.from_config(nsa_config(method, preset), **kwargs)
    return {"cutpaste": t.CutPaste, "cutpaste-scar": t.CutPasteScar, "draem": t.DraemAnomaly}[method](**kwargs)


def _check(method):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")


def label_loss(method: str, preset: str | NSAConfig = "mvtec/carpet") -> str:
    """``"mse"`` for raw intensity labels, else ``"bce"``."""
    if method in _NSA_FAMILY and nsa_config(method, preset).label == "intensity":
        return "mse"
    return "bce"


__all__ = ["METHODS", "generator", "label_loss", "nsa_config", "transform"]
