"""nsa-augment: Natural Synthetic Anomalies for self-supervised anomaly detection.

Schlüter, Tan, Hou & Kainz, "Natural Synthetic Anomalies for Self-Supervised
Anomaly Detection and Localization", ECCV 2022 (arXiv:2109.15222).
"""

from .poisson import poisson_blend, poisson_blend_reference

__version__ = "0.1.0"

__all__ = ["poisson_blend", "poisson_blend_reference", "__version__"]
