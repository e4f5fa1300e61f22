"""PyTorch integration: datasets that seed DataLoader workers right, and NSA rendered on the accelerator.

* :mod:`~nsa_augment.torch.dataset` — :class:`SyntheticAnomalyDataset`, :class:`EpochSampler`,
  :class:`RunSampler`, :func:`worker_init_fn`: synthesis on the CPU, in DataLoader workers.
* :mod:`~nsa_augment.torch.render` — :func:`render_batch` / :class:`NSABatchRenderer`: plans drawn
  on the CPU (cheap, seeded; :class:`PlannedAnomalyDataset` in DataLoader workers), a whole batch
  rendered at once on any device (``docs/performance.md``).
* :mod:`~nsa_augment.torch.normalize` — :class:`Uint8Normalize`: ``A.Normalize`` on the device for
  uint8 batches, which leave the workers at a quarter of float32's bytes.
"""

from .dataset import (
    EpochSampler,
    PlannedAnomalyDataset,
    RunSampler,
    SyntheticAnomalyDataset,
    collate_plans,
    load_image,
    seed_everything_in,
    worker_init_fn,
)
from .normalize import Uint8Normalize
from .render import NSABatchRenderer, render_batch

__all__ = ["EpochSampler", "NSABatchRenderer", "PlannedAnomalyDataset", "RunSampler", "SyntheticAnomalyDataset",
           "Uint8Normalize", "collate_plans", "load_image", "render_batch", "seed_everything_in", "worker_init_fn"]
