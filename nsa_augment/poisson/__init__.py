"""Poisson image editing: a Numba/FFT solver, OpenCV's formulation, and a sparse-direct reference."""

from .blend import FORMULATIONS, GRADIENT_MODES, poisson_blend
from .opencv import seamless_clone
from .reference import poisson_blend_reference, poisson_blend_volume_reference
from .volume import poisson_blend_volume

__all__ = ["FORMULATIONS", "GRADIENT_MODES", "poisson_blend", "poisson_blend_reference", "poisson_blend_volume",
           "poisson_blend_volume_reference", "seamless_clone"]
