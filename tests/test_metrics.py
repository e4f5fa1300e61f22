"""Metrics against brute-force definitions."""

import cv2
import numpy as np
import pytest

from nsa_augment.detection.metrics import au_pro, evaluate, image_scores, roc_auc, roc_curve

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 1.x names it trapz


def _auc_pairs(labels, scores):
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (pos.size * neg.size)


def test_roc_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.random(300) < 0.3
        scores = np.round(rng.random(300) + labels * 0.3, 1)  # many ties
        assert roc_auc(labels, scores) == pytest.approx(_auc_pairs(labels, scores))
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    fpr, tpr = roc_curve(labels, scores)
    assert _trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))


def _au_pro_brute(masks, maps, limit=0.3):
    regions = []
    for i, m in enumerate(masks):
        n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        regions += [(i, lab == k) for k in range(1, n)]
    normal = maps[~masks]
    ts = np.unique(maps)[::-1]
    fprs, pros = [0.0], [0.0]
    for t in ts:
        fprs.append((normal >= t).mean())
        pros.append(np.mean([(maps[i][r] >= t).mean() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x, y = fprs[keep], pros[keep]
    j = np.argmax(~keep)
    y_lim = pros[j - 1] + (pros[j] - pros[j - 1]) * (limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1])
    return _trapezoid(np.r_[y, y_lim], np.r_[x, limit]) / limit


def test_au_pro_matches_brute_force():
    rng = np.random.default_rng(1)
    masks = np.zeros((5, 24, 24), bool)
    masks[0, 3:8, 3:9] = True
    masks[0, 15:20, 15:22] = True  # two regions in one image
    masks[2, 10:14, 2:20] = True
    # image 1, 3, 4: empty masks (normal or defect without pixels)
    maps = rng.random(masks.shape) * 0.8 + masks * rng.random(masks.shape) * 0.6
    assert au_pro(masks, maps, num_thresholds=5000) == pytest.approx(_au_pro_brute(masks, maps), abs=5e-3)


def test_au_pro_perfect_and_random():
    masks = np.zeros((4, 32, 32), bool)
    masks[1, 5:15, 5:15] = True
    perfect = masks.astype(float) + 0.01 * np.random.default_rng(0).random(masks.shape)
    assert au_pro(masks, perfect) > 0.99
    rnd = np.random.default_rng(1).random(masks.shape)
    assert au_pro(masks, rnd) == pytest.approx(0.15, abs=0.05)  # random scores: PRO = FPR, area 0.3^2/2 / 0.3
    assert np.isnan(au_pro(np.zeros_like(masks), rnd))


def test_evaluate_and_pooling():
    masks = np.zeros((4, 8, 8), bool)
    masks[2, 2:4, 2:4] = True
    masks[3, 5:7, 1:3] = True
    maps = np.zeros((4, 8, 8))
    maps[2, 2:4, 2:4] = 1
    maps[3, 5:7, 1:3] = 0.9
    out = evaluate(np.array([0, 0, 1, 1]), masks, maps)
    assert out == {"image_auroc": 1.0, "pixel_auroc": 1.0, "au_pro": pytest.approx(1.0)}
    assert image_scores(maps, "max").tolist() == [0, 0, 1, 0.9]
    with pytest.raises(ValueError, match="pooling"):
        image_scores(maps, "median")
