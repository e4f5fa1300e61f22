"""SyntheticAnomalyDataset with real DataLoader workers: distinct, reproducible streams per worker and epoch."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nsa_augment import NaturalSyntheticAnomaly
from nsa_augment.torch import SyntheticAnomalyDataset, load_image, worker_init_fn


def _dataset(n=6, size=48):
    rng = np.random.default_rng(0)
    img = rng.integers(40, 220, (size, size, 3), dtype=np.uint8)
    # identical images: any difference between items comes from the random streams alone
    return SyntheticAnomalyDataset([img] * n, A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)]), seed=1)


def _epochs(dataset, context, epochs=2, seed=0):
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context=context, worker_init_fn=worker_init_fn)
    return [[m[0].numpy().copy() for _, m, _ in loader] for _ in range(epochs)]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_epochs_and_reruns(context):
    ds = _dataset()
    run1 = _epochs(ds, context)
    run2 = _epochs(ds, context)
    e1, e2 = run1
    # items 0 and 1 come from different workers: different anomalies
    assert not np.array_equal(e1[0], e1[1])
    assert all(m.max() > 0 for m in e1)
    # the next epoch does not replay the previous one
    assert not any(np.array_equal(a, b) for a, b in zip(e1, e2))
    # the same torch seed reproduces everything
    for a, b in zip(run1[0] + run1[1], run2[0] + run2[1]):
        assert np.array_equal(a, b)
    assert not np.array_equal(_epochs(ds, context, epochs=1, seed=5)[0][0], e1[0])


def test_main_process_is_reproducible_and_items_have_labels():
    a, b = _dataset(), _dataset()
    for i in range(3):
        ia, ma, la = a[i]
        ib, mb, lb = b[i]
        assert np.array_equal(ia, ib) and torch.equal(ma, mb)
        assert la.item() == 1.0 and ma.dtype == torch.float32


def test_reads_paths_and_mixed_channels(tmp_path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "b.jpg"), rng.integers(0, 256, (50, 44), dtype=np.uint8))
    assert load_image(tmp_path / "a.png").shape == (40, 40, 3)
    assert load_image(tmp_path / "b.jpg").shape == (50, 44)
    ds = SyntheticAnomalyDataset(sorted(tmp_path.glob("*")), A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)]))
    for i in range(2):
        image, mask, label = ds[i]
        assert mask.shape == image.shape[:2]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        load_image(tmp_path / "broken.png")


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        SyntheticAnomalyDataset([], A.Compose([]))
    with pytest.raises(TypeError, match="callable"):
        SyntheticAnomalyDataset([np.zeros((8, 8), np.uint8)], "nsa")


def _keyed_batches(ds, workers, epochs=2, world=1, rank=0):
    from nsa_augment.torch import EpochSampler

    sampler = EpochSampler(len(ds), seed=3, rank=rank, world=world)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.append([(m.numpy().copy(), x.numpy().copy()) for x, m, _ in loader])
    return out


def test_keyed_items_do_not_depend_on_workers_and_differ_per_epoch():
    """(epoch, index) keys: the same examples with 0 or 2 persistent workers; a new draw every epoch."""
    ds = _dataset(n=6)
    ds.transform = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0), A.HorizontalFlip(p=0.5)])
    ds.reseed(1)
    single = _keyed_batches(ds, 0)
    multi = _keyed_batches(ds, 2)
    for e_single, e_multi in zip(single, multi):
        for (m1, x1), (m2, x2) in zip(e_single, e_multi):
            assert np.array_equal(m1, m2) and np.array_equal(x1, x2)
    first, second = single
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    # two ranks see disjoint halves of the epoch's permutation
    halves = [_keyed_batches(ds, 0, epochs=1, world=2, rank=r)[0] for r in range(2)]
    assert sum(m.shape[0] for h in halves for m, _ in h) == 6


def test_source_transform_augments_the_source_independently():
    calls = []

    def source_transform(image):
        calls.append(image.shape)
        return {"image": image[::-1].copy()}

    rng = np.random.default_rng(0)
    images = [rng.integers(40, 220, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    ds = SyntheticAnomalyDataset(images, A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)]),
                                 source_transform=source_transform)
    ds[0]
    ds[(0, 1)]
    assert calls == [(48, 48, 3), (48, 48, 3)]
    with pytest.raises(TypeError, match="source_transform must be callable"):
        SyntheticAnomalyDataset(images, A.Compose([]), source_transform="flip")


@pytest.mark.parametrize("n, batch, steps, start, world", [(7, 2, 8, 0, 1), (7, 2, 5, 3, 1), (10, 3, 7, 1, 2), (4, 4, 3, 0, 1)])
def test_run_sampler_is_the_per_epoch_passes_back_to_back(n, batch, steps, start, world):
    """One pass of RunSampler = the per-epoch passes with drop_last, epoch after epoch, cut after `steps`
    batches: the same examples in the same order, on every rank, from any (resumed) start epoch."""
    from nsa_augment.torch import EpochSampler, RunSampler

    for rank in range(world):
        epochs = EpochSampler(n, seed=5, rank=rank, world=world)
        expected, epoch = [], start
        while len(expected) < steps:
            keys = epochs.keys(epoch)
            expected += [keys[i : i + batch] for i in range(0, len(keys) - batch + 1, batch)]  # drop_last
            epoch += 1
        expected = [key for b in expected[:steps] for key in b]
        run = RunSampler(epochs, batch, steps, start)
        assert list(run) == expected and len(run) == steps * batch
        epochs.set_epoch(start + 1)  # set_epoch feeds plain iteration, not RunSampler
        assert list(epochs) == epochs.keys(start + 1) and list(run) == expected


def test_run_sampler_serves_a_dataloader_with_workers():
    """Through a DataLoader with workers: the batches of separate per-epoch passes, in one pass."""
    from nsa_augment.torch import EpochSampler, RunSampler

    ds = _dataset(n=5)
    ds.transform = A.Compose([NaturalSyntheticAnomaly.from_preset("mvtec/carpet", p=1.0)])
    ds.reseed(1)
    per_epoch = _keyed_batches(ds, 0, epochs=3)  # 5 images, batch 2: 3 batches per epoch, the last of 1 image
    expected = [b for epoch in per_epoch for b in epoch if b[0].shape[0] == 2][:5]
    loader = DataLoader(ds, batch_size=2, sampler=RunSampler(EpochSampler(5, seed=3), 2, 5), num_workers=2,
                        drop_last=True)
    got = [(m.numpy(), x.numpy()) for x, m, _ in loader]
    assert len(got) == 5
    for (m1, x1), (m2, x2) in zip(got, expected):
        assert np.array_equal(m1, m2) and np.array_equal(x1, x2)


def test_run_sampler_bad_arguments():
    from nsa_augment.torch import EpochSampler, RunSampler

    with pytest.raises(ValueError, match="no whole batch of 4"):
        RunSampler(EpochSampler(3), 4, 10)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        RunSampler(EpochSampler(3), 0, 10)
    assert list(RunSampler(EpochSampler(3), 2, 0)) == []


@pytest.mark.parametrize("mean, std, channels", [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3),
                                                 ((0.5,), (0.25,), 1), ((10.0, 20.0, 30.0, 40.0), (2.0, 3.0, 4.0, 5.0), 4)])
def test_uint8_normalize_on_the_device_equals_albumentations_per_image(mean, std, channels):
    """Every value of every channel, and random images: the batch normalised by ``Uint8Normalize`` equals each
    image normalised by ``A.Normalize`` bit for bit, whatever the mean, std or channel count."""
    from nsa_augment.torch import Uint8Normalize

    rng = np.random.default_rng(0)
    norm = A.Normalize(mean, std, max_pixel_value=255.0)
    every = rng.permutation(np.repeat(np.arange(256, dtype=np.uint8), channels * 16)).reshape(4, channels, 32, 32)
    batch = np.concatenate([every, rng.integers(0, 256, (2, channels, 32, 32), dtype=np.uint8)])
    module = Uint8Normalize(norm, channels).to("cpu")
    got = module(torch.from_numpy(batch)).numpy()
    assert got.dtype == np.float32 and got.shape == batch.shape
    for b in range(len(batch)):
        np.testing.assert_array_equal(got[b].transpose(1, 2, 0), norm(image=batch[b].transpose(1, 2, 0))["image"]
                                      .reshape(32, 32, channels))
    assert "channels=" + str(channels) in repr(module)


def test_uint8_normalize_refuses_what_it_cannot_reproduce():
    from nsa_augment.torch import Uint8Normalize

    with pytest.raises(ValueError, match="per-image statistics"):
        Uint8Normalize(A.Normalize(normalization="image"))
    with pytest.raises(ValueError, match="per-image statistics"):
        Uint8Normalize(A.HorizontalFlip())  # not a normalisation at all
    with pytest.raises(ValueError, match="p=1"):
        Uint8Normalize(A.Normalize(p=0.5))  # its ramp may come back unnormalised: an identity table
    module = Uint8Normalize(A.Normalize())
    with pytest.raises(TypeError, match="uint8"):
        module(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        module(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
