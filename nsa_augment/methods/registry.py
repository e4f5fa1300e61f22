"""Every synthetic-anomaly method by name, under one protocol.

A :class:`Method` bundles a method's config (built on a class preset's patch geometry where it uses
NSA's sampler), ``plan(image, source, config, rng)`` and ``render(image, source, config, plan)``.
NSA, FPI, PII and the NSA paper's CutPaste variant are settings of the NSA generator; CutPaste,
CutPaste-Scar and DRAEM-style anomalies have generators of their own.  The Albumentations
transform for a method is :func:`nsa_augment.transforms.transform_for`.

| name | what | label | anomaly on (its paper) |
|---|---|---|---|
| ``nsa`` | the class preset (Poisson blend, normal/mixed gradients, rescale, object masks) | preset's (logistic) | every example |
| ``nsa-binary`` | the same with binary labels | binary | every example |
| ``nsa-reference`` | the preset with the reference code's blend and rescale (``poisson="opencv"``, ``rescale_clip="reference"``) | preset's | every example |
| ``cutpaste-nsa`` | NSA's patch sampling, hard paste from the same image (the NSA paper's CutPaste baseline) | binary | every example |
| ``fpi`` | a patch of another image alpha-blended in place, ``f ~ U(0.05, 0.95)`` | continuous ``f`` | every example |
| ``pii`` | the same patch, Poisson interpolation of the gradient fields with ``f`` | continuous ``f`` | every example |
| ``cutpaste`` | CutPaste (Li et al. 2021): jittered rectangle of the image pasted elsewhere | binary | half (normal vs. augmented) |
| ``cutpaste-scar`` | CutPaste-Scar: thin rotated jittered rectangle | binary | half |
| ``draem`` | DRAEM-style: Perlin-noise region filled with an augmented texture, opacity ``U(0, 0.8)`` | binary | half (``p = 0.5`` in its code) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cutpaste import CutPasteConfig, ScarConfig, plan_cutpaste, plan_scar, render_cutpaste, render_scar
from .draem import DraemConfig, plan_draem, render_draem
from .nsa import NSAConfig, plan_anomaly, presets, render_anomaly
from .nsa.synthesis import plan_keeping_inputs
from .plan import Config, Plan


@dataclass(frozen=True)
class Method:
    """One synthetic-anomaly method.

    Attributes
    ----------
    name : str
    summary : str
    config_type : type
        Its frozen, validated config class.
    uses_source : bool
        Whether it takes patches or texture from a second image.
    anomaly_p : float
        Fraction of training examples its paper made anomalous (1.0: every one).
    """

    name: str
    summary: str
    config_type: type
    uses_source: bool
    anomaly_p: float
    _config: Callable[[NSAConfig], Config]
    _plan: Callable[..., Plan]
    _render: Callable[..., tuple[np.ndarray, np.ndarray]]
    #: ``fn(image, source, config, rng) -> kept``, a plan with what rendering it on the same arrays may
    #: reuse (:class:`~nsa_augment.methods.nsa.synthesis.PlannedInputs`); None where nothing is worth keeping.
    _plan_keeping: Callable[..., Any] | None = None

    def config(self, preset: str | Path | NSAConfig = "mvtec/carpet") -> Config:
        """The method's settings; NSA-family methods build on the preset's patch geometry.

        ``preset``: a preset name, a JSON file of :class:`NSAConfig` fields, or an NSAConfig.
        """
        base = presets.load(preset) if isinstance(preset, (str, Path)) else preset
        if not isinstance(base, NSAConfig):
            raise TypeError(f"preset must be a preset name or an NSAConfig, got {type(preset).__name__}")
        return self._config(base)

    def plan(self, image: np.ndarray, source: np.ndarray | None, config: Config, rng: np.random.Generator) -> Plan:
        """Draw a plan (all randomness) for ``image``; ``source`` is ignored by methods that cut from the image."""
        return self._plan(image, source if self.uses_source else None, config, rng)

    def plan_keeping_inputs(self, image: np.ndarray, source: np.ndarray | None, config: Config,
                            rng: np.random.Generator) -> tuple[Plan, Any]:
        """``(plan, kept)``: :meth:`plan`, and what :meth:`render` may reuse to render that plan on these very
        arrays (the checked inputs and object masks; None for methods that keep nothing)."""
        source = source if self.uses_source else None
        if self._plan_keeping is None:
            return self._plan(image, source, config, rng), None
        kept = self._plan_keeping(image, source, config, rng)
        return kept.plan, kept

    def render(self, image: np.ndarray, source: np.ndarray | None, config: Config, plan: Plan, kept: Any = None):
        """Render a plan on ``image``: ``(image, label)``, deterministic.

        ``kept``: from :meth:`plan_keeping_inputs`; used only when these are the very arguments it was
        planned with (the same result, faster), ignored otherwise.
        """
        source = source if self.uses_source else None
        if kept is not None and kept.matches(image, source, config, plan):
            return kept.render()
        return self._render(image, source, config, plan)

    def generator(self, preset: str | NSAConfig = "mvtec/carpet") -> Callable[..., tuple]:
        """``fn(destination, source, rng) -> (image, label, plan)`` with the preset's config."""
        cfg = self.config(preset)

        def generate(destination, source, rng):
            plan = self.plan(destination, source, cfg, rng)
            return (*self.render(destination, source, cfg, plan), plan)

        return generate


def _fpi_pii(base: NSAConfig, **blend) -> NSAConfig:
    # in place (no shift, no rescale), one patch, interpolation factor f ~ U(0.05, 0.95)
    return base.replace(shift=False, rescale=False, num_patches=1, label="continuous", factor_range=(0.05, 0.95), **blend)


_nsa_plan = lambda image, source, cfg, rng: plan_anomaly(image, source, cfg, rng)  # noqa: E731
_nsa_render = lambda image, source, cfg, plan: render_anomaly(image, source, cfg, plan)  # noqa: E731
_nsa = (_nsa_plan, _nsa_render, plan_keeping_inputs)

_METHODS = (
    Method("nsa", "the class preset: Poisson blend, rescale, object masks", NSAConfig, True, 1.0,
           lambda base: base, *_nsa),
    Method("nsa-binary", "the class preset with binary labels", NSAConfig, True, 1.0,
           lambda base: base.replace(label="binary"), *_nsa),
    Method("nsa-reference", "the class preset with the reference code's blend (cv2.seamlessClone's system) and "
           "rescale clipping", NSAConfig, True, 1.0,
           lambda base: base.replace(poisson="opencv", rescale_clip="reference") if base.blend == "poisson"
           else base.replace(rescale_clip="reference"), *_nsa),
    # same image as source; object masks only make sense between two images
    Method("cutpaste-nsa", "NSA's patch sampling, hard paste from the same image", NSAConfig, False, 1.0,
           lambda base: base.replace(blend="paste", poisson="exact", same_source=True, object_masks=None, label="binary"),
           *_nsa),
    Method("fpi", "a patch of another image alpha-blended in place", NSAConfig, True, 1.0,
           lambda base: _fpi_pii(base, blend="alpha", poisson="exact"), *_nsa),
    Method("pii", "a patch of another image, Poisson-interpolated gradients", NSAConfig, True, 1.0,
           lambda base: _fpi_pii(base, blend="poisson", gradients="interpolated"), *_nsa),
    Method("cutpaste", "CutPaste: a jittered rectangle of the image pasted elsewhere", CutPasteConfig, False, 0.5,
           lambda base: CutPasteConfig(), lambda image, source, cfg, rng: plan_cutpaste(image, cfg, rng),
           lambda image, source, cfg, plan: render_cutpaste(image, cfg, plan)),
    Method("cutpaste-scar", "CutPaste-Scar: a thin rotated jittered rectangle", ScarConfig, False, 0.5,
           lambda base: ScarConfig(), lambda image, source, cfg, rng: plan_scar(image, cfg, rng),
           lambda image, source, cfg, plan: render_scar(image, cfg, plan)),
    Method("draem", "DRAEM-style: a Perlin-noise region filled with an augmented texture", DraemConfig, True, 0.5,
           lambda base: DraemConfig(), lambda image, source, cfg, rng: plan_draem(image, cfg, rng), render_draem),
)

#: Every method by name.
REGISTRY: dict[str, Method] = {m.name: m for m in _METHODS}
METHODS = tuple(REGISTRY)
NSA_FAMILY = tuple(m.name for m in _METHODS if m.config_type is NSAConfig)


def get(name: str) -> Method:
    """The method called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return REGISTRY[name]


def config(method: str, preset: str | NSAConfig = "mvtec/carpet") -> Config:
    """The settings of ``method`` built on ``preset`` (see :meth:`Method.config`)."""
    return get(method).config(preset)


def nsa_config(method: str, preset: str | NSAConfig = "mvtec/carpet") -> NSAConfig:
    """The NSA-generator settings of an NSA-family method, built on a class preset's patch geometry."""
    if method not in NSA_FAMILY:
        raise ValueError(f"{method!r} is not an NSA-family method; NSA-family methods: {', '.join(NSA_FAMILY)}")
    return get(method).config(preset)


def generator(method: str, preset: str | NSAConfig = "mvtec/carpet") -> Callable[..., tuple]:
    """``fn(destination, source, rng) -> (image, label, plan)`` for a method."""
    return get(method).generator(preset)


__all__ = ["METHODS", "NSA_FAMILY", "REGISTRY", "Method", "config", "generator", "get", "nsa_config"]
