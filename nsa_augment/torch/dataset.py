"""A dataset of synthetic anomalies with correct seeding in DataLoader workers.

Albumentations 2.0.8 transforms carry their random state inside the object.  A
DataLoader copies that object into every worker, so on its own every worker
replays the *same* augmentations, and (without persistent workers) every epoch
replays the previous one.  Two remedies:

* Indexed by ``(epoch, index)`` keys from :class:`EpochSampler`, an item's randomness
  derives from ``(seed, epoch, index)`` alone: the same examples whatever the number
  of workers, processes or ranks, with persistent workers and one DataLoader for the
  whole run.  The training loop uses this, through :class:`RunSampler`: every epoch's
  keys in one loader pass, so that the workers never wait at an epoch boundary.
* Indexed by plain integers, :class:`SyntheticAnomalyDataset` reseeds itself and its
  pipeline from PyTorch's per-worker seed (``get_worker_info().seed``), which differs
  per worker and per epoch and is reproducible under ``torch.manual_seed`` or a
  DataLoader ``generator``.  :func:`worker_init_fn` does the same for datasets of your own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from ..io import load_image, match_channels
from ..methods.nsa.labels import image_label

__all__ = ["EpochSampler", "PlannedAnomalyDataset", "RunSampler", "SyntheticAnomalyDataset", "collate_plans",
           "load_image", "seed_everything_in", "worker_init_fn"]
# (load_image is re-exported from .io)


def seed_everything_in(obj: Any, seed: int) -> None:
    """Reseed an Albumentations pipeline (or anything with ``set_random_seed``) from ``seed``."""
    if hasattr(obj, "set_random_seed"):
        obj.set_random_seed(int(seed) % 2**32)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the worker's copy of the dataset from PyTorch's worker seed.

    Calls ``dataset.reseed(seed)`` if the dataset has it (our dataset does), else
    reseeds ``dataset.transform`` if that has ``set_random_seed`` (an
    Albumentations pipeline).  The seed is ``get_worker_info().seed``: different
    for every worker and every epoch, reproducible under ``torch.manual_seed``.
    """
    info = get_worker_info()
    if info is None:
        return
    dataset = info.dataset
    if hasattr(dataset, "reseed"):
        dataset.reseed(info.seed)
    elif hasattr(dataset, "transform"):
        seed_everything_in(dataset.transform, info.seed)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a permutation drawn from ``(seed, epoch)``, split across ranks.

    Call :meth:`set_epoch` before each epoch (it runs in the main process, so it
    works with persistent workers).  Like ``DistributedSampler``, every rank
    gets ``ceil(n / world)`` keys (the permutation wraps around to fill the last
    round), or ``floor`` with ``drop_last``.

    Examples
    --------
    >>> s = EpochSampler(5, seed=0, rank=0, world=2)
    >>> s.set_epoch(1)
    >>> [key[0] for key in s], len(s)
    ([1, 1, 1], 3)
    """

    def __init__(self, n: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world: int = 1,
                 drop_last: bool = False):
        if n < 1:
            raise ValueError(f"EpochSampler needs at least one item, got {n}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must lie in 0..{world - 1}, got {rank}")
        self.n, self.shuffle, self.seed, self.rank, self.world, self.drop_last = n, shuffle, seed, rank, world, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.world if self.drop_last else -(-self.n // self.world)

    def keys(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, index)`` keys of ``epoch``, in order (what iterating yields after ``set_epoch``)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        order = np.resize(order, len(self) * self.world)  # wraps around (or trims with drop_last)
        return [(int(epoch), int(i)) for i in order[self.rank :: self.world]]

    def __iter__(self):
        return iter(self.keys(self.epoch))


class RunSampler(Sampler):
    """A whole run's keys in one pass: ``steps`` batches of an :class:`EpochSampler`'s epochs, from ``start_epoch`` on.

    Each epoch gives its first ``len(epochs) // batch_size`` whole batches, as a
    DataLoader with ``drop_last=True`` over that epoch would, so no batch mixes
    two epochs and the examples are exactly those of one loader pass per epoch.
    But one DataLoader iteration now serves the whole run: its workers go on
    preparing the next epoch's batches while the last ones of this epoch train,
    instead of idling at every epoch boundary until the next pass asks for its
    first batches. With few images per epoch (MVTec AD classes: 60-400 training
    images, a few batches) and a fast training step (a GPU), that wait was most
    of the run.

    Parameters
    ----------
    epochs : EpochSampler
        The per-epoch keys (its ``keys(epoch)``; its own ``set_epoch`` is not used).
    batch_size : int
        Keys per batch (per rank), >= 1; an epoch must hold at least one batch.
    steps : int
        Batches in all, >= 0.
    start_epoch : int
        The first epoch (a resumed run's).

    Examples
    --------
    >>> run = RunSampler(EpochSampler(5, seed=0), batch_size=2, steps=3, start_epoch=1)
    >>> [epoch for epoch, _ in run], len(run)
    ([1, 1, 1, 1, 2, 2], 6)
    """

    def __init__(self, epochs: EpochSampler, batch_size: int, steps: int, start_epoch: int = 0):
        if batch_size < 1 or steps < 0 or start_epoch < 0:
            raise ValueError(f"RunSampler needs batch_size >= 1, steps >= 0 and start_epoch >= 0, got {batch_size}, "
                             f"{steps} and {start_epoch}")
        if len(epochs) < batch_size:
            raise ValueError(f"an epoch of {len(epochs)} keys holds no whole batch of {batch_size}: use a smaller "
                             "batch size")
        self.epochs, self.batch_size, self.steps, self.start_epoch = epochs, batch_size, steps, start_epoch

    def __len__(self) -> int:
        return self.steps * self.batch_size

    def __iter__(self):
        per_epoch = len(self.epochs) // self.batch_size * self.batch_size
        left, epoch = len(self), self.start_epoch
        while left > 0:
            keys = self.epochs.keys(epoch)[: min(per_epoch, left)]
            yield from keys
            left -= len(keys)
            epoch += 1


class SyntheticAnomalyDataset(Dataset):
    """Normal images in, synthetic anomaly training examples out.

    Item ``i`` is image ``i`` passed through ``transform`` with a *different*
    image of the pool as the patch source (``nsa_source``) and a zero ``mask``
    for the transform to write the anomaly label into.

    Parameters
    ----------
    images : sequence of ndarray or path
        Normal images (uint8 or float32 in [0, 1]) or image files (read with
        :func:`load_image` when used).
    transform : callable
        An Albumentations pipeline containing a
        :class:`~nsa_augment.NaturalSyntheticAnomaly` (and whatever else:
        flips, crops, ``Normalize``, ``ToTensorV2``), called as
        ``transform(image=..., mask=..., nsa_source=...)``.
    seed : int
        Seeds the items (``(epoch, index)`` keys) or the main-process streams (integer indices).
    source_key : str
        The transform's ``source_key``.
    source_transform : callable, optional
        Applied to the source image first (``source_transform(image=...)["image"]``),
        independently of the destination's draw: the NSA reference passes its source
        through the same augmentation as the image (pass the geometric part of your
        pipeline here).

    Items are ``(image, mask, label)``: the pipeline's image and mask (tensors
    if it ends with ``ToTensorV2``; the mask as float32) and ``label`` = 1 if the
    final mask has any positive pixel (an anomaly survived later crops).

    Before a DataLoader with workers, draw one item in the main process (``dataset[0]``): on a
    cold Numba cache the kernels then compile once and the workers inherit them, instead of
    every worker compiling them at once (``nsa-augment train`` does this).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | str | Path],
        transform: Callable[..., dict],
        *,
        seed: int = 0,
        source_key: str = "nsa_source",
        source_transform: Callable[..., dict] | None = None,
    ):
        if len(images) < 1:
            raise ValueError("images is empty: give at least one normal image")
        if not callable(transform):
            raise TypeError(f"transform must be callable (an Albumentations pipeline), got {type(transform).__name__}")
        if source_transform is not None and not callable(source_transform):
            raise TypeError(f"source_transform must be callable, got {type(source_transform).__name__}")
        self.images = list(images)
        self.transform = transform
        self.source_transform = source_transform
        self.source_key = source_key
        self._worker_seed = None
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the dataset's and the pipelines' random streams from ``seed`` (also the base of keyed items)."""
        self.seed = int(seed)
        self._restart(self.seed)

    def _restart(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        seed_everything_in(self.transform, seed)
        if self.source_transform is not None:
            seed_everything_in(self.source_transform, seed + 1)

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, index: int) -> np.ndarray:
        item = self.images[index]
        return item if isinstance(item, np.ndarray) else load_image(item)

    def _pair(self, key) -> tuple[np.ndarray, np.ndarray, int]:
        """Restart the item's streams, then its image, its source (another image, ``source_transform`` applied) and index."""
        if isinstance(key, tuple):  # (epoch, index) from EpochSampler: the item's own streams
            epoch, index = key
            self._restart(int(np.random.SeedSequence([self.seed, int(epoch), int(index)]).generate_state(1)[0]))
        else:
            index = key
            info = get_worker_info()
            if info is not None and self._worker_seed != info.seed:
                # First item in this worker (this epoch): reseed, even without worker_init_fn.
                self._worker_seed = info.seed
                self._restart(info.seed)
        image = self._image(index)
        n = len(self.images)
        other = (index + 1 + int(self.rng.integers(n - 1))) % n if n > 1 else index
        source = self._image(other)
        if self.source_transform is not None:
            source = self.source_transform(image=source)["image"]
        return image, match_channels(source, image), index

    def __getitem__(self, key):
        image, source, _ = self._pair(key)
        out = self.transform(image=image, mask=np.zeros(image.shape[:2], np.float32), **{self.source_key: source})
        mask = out["mask"]
        mask = mask.float() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask, dtype=np.float32))
        label = torch.tensor(float(image_label(mask.numpy())), dtype=torch.float32)
        return out["image"], mask, label


class PlannedAnomalyDataset(SyntheticAnomalyDataset):
    """Normal images in, ``(image, source, plan)`` out: NSA planned in the workers, rendered on the device.

    The CPU side of :func:`nsa_augment.torch.render_batch`: each item is the (augmented) image,
    its patch source (another image of the pool, ``source_transform`` applied) and an NSA plan
    drawn for them with probability ``p`` (else a plan without patches).  Batch the items with
    :func:`collate_plans` and render them on the training device.  Seeding is
    :class:`SyntheticAnomalyDataset`'s: ``(epoch, index)`` keys give every item its own streams.

    Parameters
    ----------
    images : sequence of ndarray or path
        Normal images, uint8 or float32 in [0, 1], all of one size after ``transform``.
    config : NSAConfig or str
        The generator (``poisson="exact"``).
    transform : callable, optional
        Applied to the image before planning (``transform(image=...)["image"]``): the geometric
        augmentation, not the anomaly, not normalisation.
    p : float
        Probability that an item gets an anomaly.
    seed, source_transform :
        As for :class:`SyntheticAnomalyDataset`.

    Examples
    --------
    >>> import numpy as np
    >>> from nsa_augment.torch import PlannedAnomalyDataset, collate_plans, render_batch
    >>> rng = np.random.default_rng(0)
    >>> pool = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    >>> ds = PlannedAnomalyDataset(pool, "mvtec/carpet")
    >>> images, sources, plans = collate_plans([ds[(0, i)] for i in range(4)])
    >>> anomalous, labels = render_batch(images, sources, plans, "mvtec/carpet")
    >>> tuple(anomalous.shape), tuple(labels.shape)
    ((4, 3, 64, 64), (4, 64, 64))
    """

    def __init__(self, images, config, *, transform=None, p: float = 1.0, seed: int = 0, source_transform=None):
        from ..methods.nsa import presets

        cfg = presets.resolve(config, files=True)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.config, self.p = cfg, float(p)
        super().__init__(images, transform if transform is not None else _identity, seed=seed,
                         source_transform=source_transform)

    def __getitem__(self, key):
        from ..methods.nsa.synthesis import NSAPlan, plan_anomaly

        image, source, _ = self._pair(key)
        image = self.transform(image=image)["image"]
        if self.rng.random() < self.p:
            plan = plan_anomaly(image, source, self.config, self.rng)
        else:
            plan = NSAPlan(shape=image.shape[:2], source_shape=source.shape[:2])
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.reshape(a.shape[0], a.shape[1], -1))).permute(2, 0, 1)  # noqa: E731
        return as_tensor(image), as_tensor(source), plan


def _identity(image):
    return {"image": image}


def collate_plans(items) -> tuple[torch.Tensor, torch.Tensor, list]:
    """DataLoader ``collate_fn`` for :class:`PlannedAnomalyDataset`: stacked images and sources, a list of plans."""
    images, sources, plans = zip(*items)
    return torch.stack(images), torch.stack(sources), list(plans)
