"""nsa-augment: Natural Synthetic Anomalies for self-supervised anomaly detection.

Schlüter, Tan, Hou & Kainz, "Natural Synthetic Anomalies for Self-Supervised
Anomaly Detection and Localization", ECCV 2022 (arXiv:2109.15222).
"""

import importlib
import importlib.abc
import importlib.util
import sys

from . import numba_cache  # noqa: E402  (before any kernel is defined)

numba_cache.prepare()

from . import methods  # noqa: E402
from .methods import plan_from_dict  # noqa: E402
from .methods.nsa import (  # noqa: E402
    NSAConfig,
    NSAPlan,
    PatchGeometry,
    SynthesisInfo,
    image_label,
    make_label,
    object_mask,
    plan_anomaly,
    plan_volume_anomaly,
    presets,
    render_anomaly,
    render_volume_anomaly,
    synthesize,
    synthesize_volume,
)
from .poisson import (  # noqa: E402
    poisson_blend,
    poisson_blend_reference,
    poisson_blend_volume,
    poisson_blend_volume_reference,
    seamless_clone,
)

__version__ = "0.2.0"

__all__ = [
    "CutPaste",
    "CutPasteScar",
    "DraemAnomaly",
    "NaturalSyntheticAnomaly",
    "NSAConfig",
    "NSAPlan",
    "PatchGeometry",
    "SynthesisInfo",
    "image_label",
    "make_label",
    "methods",
    "object_mask",
    "NaturalSyntheticAnomaly3D",
    "plan_anomaly",
    "plan_from_dict",
    "plan_volume_anomaly",
    "poisson_blend",
    "poisson_blend_reference",
    "poisson_blend_volume",
    "poisson_blend_volume_reference",
    "presets",
    "render_anomaly",
    "render_volume_anomaly",
    "seamless_clone",
    "synthesize",
    "synthesize_volume",
    "transform_for",
    "__version__",
]

# The transforms need albumentations, an optional extra that takes about 2 s to import: loaded on
# first use, not with the package.
_LAZY = {name: ".transforms" for name in ("NaturalSyntheticAnomaly", "NaturalSyntheticAnomaly3D", "CutPaste",
                                           "CutPasteScar", "DraemAnomaly", "transform_for")}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RegisterTransforms(importlib.abc.MetaPathFinder):
    """Registers our transforms with Albumentations' serialisation once ``albumentations`` is imported.

    ``A.load`` / ``A.from_dict`` look classes up in a registry that a class joins when it is
    defined; without this, a pipeline saved with our transforms would not load in a fresh process
    that imported only ``nsa_augment`` and ``albumentations`` (in either order).  The finder wraps
    the loader of ``albumentations`` alone, once, and never imports it itself.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "albumentations":
            return None
        sys.meta_path.remove(self)  # one shot; the search below must not find us again
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register_transforms()

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the wrapped loader
        return getattr(self.loader, name)


def _register_transforms():
    try:
        importlib.import_module(".transforms", __name__)
    except Exception:  # noqa: BLE001 - never break the caller's own import; using a transform will show the error
        pass


if "albumentations" in sys.modules:
    _register_transforms()
elif not any(isinstance(f, _RegisterTransforms) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterTransforms())
