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
