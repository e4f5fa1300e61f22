"""Metrics against brute-force definitions."""

import cv2
import numpy as np
import pytest

from nsa_augment.detection.metrics import (au_pro, auroc_standard_error, evaluate, image_scores, paired_auroc_test,
                                          roc_auc, roc_curve)

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


@pytest.mark.parametrize("scores", ["exponential", "normal"])
@pytest.mark.parametrize("auroc, positives, negatives", [(0.65, 392, 191), (0.72, 821, 503), (0.8, 40, 120)])
def test_auroc_standard_error_matches_the_spread_over_simulated_test_sets(scores, auroc, positives, negatives):
    """Hanley & McNeil's standard error against the AUROC's spread over 1,500 simulated test sets (the
    benchmark's sizes: magnetic tiles 392 / 191, ELPV 821 / 503; and a small unbalanced one, which
    tells the defective and good counts' terms apart).  Exact for exponential scores, the model the
    formula assumes; an approximation for normal ones."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(positives), np.zeros(negatives)]
    if scores == "exponential":  # P(Exp(rate m) > Exp(rate 1)) = 1 / (1 + m)
        draw = lambda: np.r_[rng.exponential(auroc / (1 - auroc), positives), rng.exponential(1, negatives)]  # noqa: E731
    else:  # two unit normals sqrt(2) Phi^-1(auroc) apart
        shift = np.sqrt(2) * norm.ppf(auroc)
        draw = lambda: np.r_[rng.normal(shift, 1, positives), rng.normal(0, 1, negatives)]  # noqa: E731
    aurocs = [roc_auc(labels, draw()) for _ in range(1500)]
    assert abs(np.mean(aurocs) - auroc) < 0.005
    tolerance = 0.05 if scores == "exponential" else (0.08 if auroc < 0.75 else 0.25)
    assert auroc_standard_error(auroc, positives, negatives) == pytest.approx(np.std(aurocs), rel=tolerance)


def test_auroc_standard_error_rejects_impossible_inputs():
    for args in ((1.2, 10, 10), (float("nan"), 10, 10), (0.7, 0, 10), (0.7, 10, 0)):
        with pytest.raises(ValueError, match="AUROC in"):
            auroc_standard_error(*args)


def _delong_by_definition(labels, a, b):
    """DeLong's variance of AUROC(a) - AUROC(b) from its definition: every (defective, good) pair."""
    labels = np.asarray(labels, bool)
    psi = lambda s: (s[labels][:, None] > s[~labels][None, :]) + 0.5 * (s[labels][:, None] == s[~labels][None, :])  # noqa: E731
    pa, pb = psi(np.asarray(a, float)), psi(np.asarray(b, float))
    m, n = pa.shape
    v10, v01 = np.stack([pa.mean(1), pb.mean(1)]), np.stack([pa.mean(0), pb.mean(0)])
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return pa.mean(), pb.mean(), np.sqrt(var)


def test_paired_auroc_test_matches_its_definition_with_ties():
    rng = np.random.default_rng(7)
    labels = rng.random(70) < 0.4
    a = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties, within and across classes
    b = np.round(0.6 * a + rng.normal(labels * 0.3, 0.8), 1)
    out = paired_auroc_test(labels, a, b)
    auroc_a, auroc_b, se = _delong_by_definition(labels, a, b)
    assert out["auroc_a"] == pytest.approx(roc_auc(labels, a)) == pytest.approx(auroc_a)
    assert out["auroc_b"] == pytest.approx(roc_auc(labels, b)) == pytest.approx(auroc_b)
    assert out["se"] == pytest.approx(se) and out["difference"] == pytest.approx(auroc_a - auroc_b)


def test_paired_auroc_test_holds_its_level_and_finds_a_real_difference():
    """Two correlated scorers of equal AUROC: about 5% of test sets reject at 0.05.  A better scorer: rejected."""
    rng = np.random.default_rng(8)
    labels = np.r_[np.ones(60, bool), np.zeros(90, bool)]
    rejected = 0
    for _ in range(400):
        shared = rng.normal(labels * 0.7, 1.0)
        a, b = shared + rng.normal(0, 0.7, 150), shared + rng.normal(0, 0.7, 150)
        rejected += paired_auroc_test(labels, a, b)["p"] < 0.05
    assert 0.02 <= rejected / 400 <= 0.09
    shared = rng.normal(labels * 0.7, 1.0)
    better = paired_auroc_test(labels, shared + rng.normal(labels * 1.5, 0.3), shared + rng.normal(0, 0.7, 150))
    assert better["difference"] > 0.1 and better["p"] < 0.001


def test_paired_auroc_test_names_bad_input():
    with pytest.raises(ValueError, match="differ in size"):
        paired_auroc_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least two defective and two good"):
        paired_auroc_test([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="finite"):
        paired_auroc_test([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
