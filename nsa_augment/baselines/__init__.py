"""The methods NSA is compared with, as functional cores: CutPaste, CutPaste-Scar and DRAEM-style anomalies.

FPI, PII and the NSA paper's CutPaste variant are settings of the NSA generator itself
(:mod:`nsa_augment.methods`).
"""

from .cutpaste import cutpaste, cutpaste_scar
from .draem import draem_anomaly
from .perlin import perlin_noise

__all__ = ["cutpaste", "cutpaste_scar", "draem_anomaly", "perlin_noise"]
