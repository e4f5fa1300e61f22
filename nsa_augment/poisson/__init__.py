"""Poisson image editing: a Numba/FFT solver and its sparse-direct reference."""

from .blend import GRADIENT_MODES, poisson_blend
from .reference import poisson_blend_reference

__all__ = ["GRADIENT_MODES", "poisson_blend", "poisson_blend_reference"]
