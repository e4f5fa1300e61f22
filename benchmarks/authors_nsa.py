"""The NSA authors' own generator, run beside ours for timing (optional; nothing else needs it).

``reference_nsa.py`` transcribes the reference generator's work; this module runs the
reference itself — ``patch_ex`` from a checkout of the authors' repository
(https://github.com/hmsch/natural-synthetic-anomalies, MIT licence), imported from
``self_sup_data/self_sup_tasks.py`` by file path, so that nothing else of the checkout
lands on ``sys.path`` (``self_sup_tasks.py`` needs only NumPy, OpenCV and scikit-image; the
repository's datasets and training code need torchvision, which does not import beside this
project's torch).  ``bench_synthesis.py --authors-code DIR`` adds its rows, so
that the transcription's timing is checked against the code it transcribes, in the same
run.  It draws from NumPy's global random state (as the reference does), seeded per
example from the benchmark's generator.

Example (a checkout in ``/tmp/nsa-authors``)::

    git clone https://github.com/hmsch/natural-synthetic-anomalies /tmp/nsa-authors
    python benchmarks/bench_synthesis.py --authors-code /tmp/nsa-authors
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

TASKS = Path("self_sup_data") / "self_sup_tasks.py"
LABEL_MODES = {"binary": "binary", "continuous": "continuous", "intensity": "intensity", "logistic": "logistic-intensity"}


def load_patch_ex(root: Path):
    """``patch_ex`` from the authors' checkout at ``root``; a one-line error if it is not there."""
    path = Path(root) / TASKS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --authors-code takes a checkout of "
                                "https://github.com/hmsch/natural-synthetic-anomalies")
    spec = importlib.util.spec_from_file_location("nsa_authors_self_sup_tasks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.patch_ex


def patch_ex_arguments(cfg) -> dict:
    """The keyword arguments of ``patch_ex`` that reproduce an :class:`~nsa_augment.NSAConfig`'s settings.

    Only configs the reference can express: Poisson blending with OpenCV's clone modes, paste
    ("swap") or alpha ("uniform"); ``rescale_clip``, ``poisson`` and ``intensity_range`` have no
    counterpart (the reference always clips like ``rescale_clip="reference"``, blends with
    ``cv2.seamlessClone`` and reads uint8).
    """
    if cfg.blend == "poisson":
        modes = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE, "mix": "mix"}
        if cfg.gradients not in modes:
            raise ValueError(f"the reference has no {cfg.gradients!r} gradients")
        mode = modes[cfg.gradients]
    else:
        mode = {"paste": "swap", "alpha": "uniform"}[cfg.blend]
    return dict(
        num_patches=cfg.num_patches, mode=mode, width_bounds_pct=cfg.width_bounds, min_object_pct=cfg.min_object,
        min_overlap_pct=cfg.min_overlap, shift=cfg.shift, label_mode=LABEL_MODES[cfg.label],
        skip_background=list(cfg.object_masks) if cfg.object_masks is not None else None, tol=cfg.tol,
        resize=cfg.rescale, gamma_params=cfg.gamma, intensity_logistic_params=cfg.logistic,
        resize_bounds=cfg.rescale_bounds, verbose=False,
    )


def authors_generator(root: Path, cfg):
    """fn(destination, source, rng) -> (image, label) calling the authors' ``patch_ex`` (uint8 RGB, as theirs)."""
    patch_ex = load_patch_ex(root)
    kwargs = patch_ex_arguments(cfg)

    def run(destination, source, rng):
        np.random.seed(int(rng.integers(2**32)))
        image, label = patch_ex(destination, source, **kwargs)
        return image, label

    run.patch_ex = patch_ex  # the function called, for inspection
    return run
