"""Anomaly-detection metrics: image AUROC, pixel AUROC and AU-PRO, vectorised.

Plain NumPy/SciPy/OpenCV; correct on images whose ground-truth mask is empty
(they contribute normal pixels only) and on ties.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.stats import norm, rankdata

# NumPy 2 renamed trapz to trapezoid; both integrate the same way (the package supports NumPy >= 1.24).
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Parameters
    ----------
    labels : array_like of bool/{0, 1}
    scores : array_like of float, same size

    Returns
    -------
    float in [0, 1]; NaN when only one class is present.

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in size: {labels.size} vs {scores.size}")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_standard_error(auroc: float, positives: int, negatives: int) -> float:
    """Standard error of an AUROC from the test set's sampling alone (Hanley & McNeil, 1982).

    How much the AUROC of one trained model would vary over other test sets of the same sizes;
    it says nothing about the spread over training seeds, which comes on top.  Needs only the
    AUROC and the class counts, so it applies to results stored without per-image scores.  The
    formula is exact for exponentially distributed scores; for normally distributed ones it is
    about 5% low at AUROCs of 0.65-0.72 and errs high (conservative) towards 0.9
    (tests/test_metrics.py, simulated test sets).

    Parameters
    ----------
    auroc : float in [0, 1]
    positives, negatives : int >= 1
        Defective and good test images.

    Returns
    -------
    float

    Examples
    --------
    >>> round(auroc_standard_error(0.8, 50, 50), 4)
    0.0445
    """
    a = float(auroc)
    if not 0.0 <= a <= 1.0 or positives < 1 or negatives < 1:
        raise ValueError(f"need an AUROC in [0, 1] and at least one test image per class, got {auroc!r}, "
                         f"{positives!r} defective, {negatives!r} good")
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    variance = (a * (1.0 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def paired_auroc_test(labels, scores_a, scores_b) -> dict:
    """Two models' image AUROCs on the same test images, compared (DeLong, DeLong & Clarke-Pearson 1988).

    The difference ``AUROC(a) - AUROC(b)`` with its standard error and two-sided p-value, from the
    AUROCs' structural components (per-image placement values), which accounts for the two sets of
    scores being paired on the same images — the test images' share of the uncertainty, not the
    training seeds'.

    Parameters
    ----------
    labels : array_like of bool/{0, 1}, shape (N,)
    scores_a, scores_b : array_like of float, shape (N,)
        Each model's score per test image, in the same order.

    Returns
    -------
    dict
        ``auroc_a``, ``auroc_b``, ``difference``, ``se`` (of the difference), ``z`` and ``p``.

    Examples
    --------
    >>> out = paired_auroc_test([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.8, 0.7, 0.3, 0.9], [0.1, 0.5, 0.4, 0.7, 0.3, 0.2])
    >>> round(out["auroc_a"], 3), round(out["auroc_b"], 3), round(out["difference"], 3), round(out["p"], 2)
    (1.0, 0.667, 0.333, 0.22)
    """
    labels = np.asarray(labels).ravel().astype(bool)
    a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (scores_a, scores_b))
    if not labels.size == a.size == b.size:
        raise ValueError(f"labels and scores differ in size: {labels.size}, {a.size} and {b.size}")
    scores = np.stack([a, b])
    m, n = int(labels.sum()), int((~labels).sum())
    if m < 2 or n < 2:
        raise ValueError(f"need at least two defective and two good test images, got {m} and {n}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    # Placement values from midranks (Sun & Xu 2014): v10[i] = P(score of positive i > a negative's),
    # v01[j] = P(a positive's score > negative j's), ties counting one half.
    v10, v01 = np.empty((2, m)), np.empty((2, n))
    for k in range(2):
        pos, neg = scores[k, labels], scores[k, ~labels]
        both = rankdata(np.r_[pos, neg])
        v10[k] = (both[:m] - rankdata(pos)) / n
        v01[k] = 1.0 - (both[m:] - rankdata(neg)) / m
    aurocs = v10.mean(axis=1)
    covariance = np.cov(v10) / m + np.cov(v01) / n
    difference = float(aurocs[0] - aurocs[1])
    se = float(np.sqrt(max(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1], 0.0)))
    z = difference / se if se > 0 else (0.0 if difference == 0 else float(np.sign(difference)) * np.inf)
    return {"auroc_a": float(aurocs[0]), "auroc_b": float(aurocs[1]), "difference": difference, "se": se,
            "z": float(z), "p": float(2.0 * norm.sf(abs(z)))}


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold (for plots)."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr


def au_pro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3, num_thresholds: int = 2000) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised by ``fpr_limit``.

    Following Bergmann et al. (MVTec AD, IJCV 2021): every connected component
    of the ground truth is a region; at a threshold, PRO is the mean over
    regions of the fraction of the region's pixels scored above it, and FPR the
    fraction of normal pixels (all images) above it.  Thresholds are quantiles
    of the normal pixels' scores covering FPR 0..``fpr_limit``; the curve is
    integrated with the trapezoid rule and linear interpolation at the limit.

    Parameters
    ----------
    masks : ndarray (N, H, W), bool or {0, 1}
    maps : ndarray (N, H, W), float anomaly scores
    fpr_limit : float in (0, 1]

    Returns
    -------
    float in [0, 1]; NaN when there is no anomalous region or no normal pixel.
    """
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"masks and maps must both have shape (N, H, W), got {masks.shape} and {maps.shape}")
    region_ids = np.zeros(masks.shape, dtype=np.int64)  # 0 = normal pixel, k > 0 = region k
    next_id = 1
    for i, m in enumerate(masks):
        if m.any():
            n, lab = cv2.connectedComponents(m.view(np.uint8), connectivity=8)
            region_ids[i][m] = lab[m] + next_id - 1
            next_id += n - 1
    n_regions = next_id - 1
    normal_scores = maps[~masks]
    if n_regions == 0 or normal_scores.size == 0:
        return float("nan")
    # Thresholds: quantiles of the normal scores covering FPR 0..fpr_limit (and a step past it).
    q = np.linspace(max(0.0, 1.0 - fpr_limit * 1.05), 1.0, num_thresholds)
    normal_q = np.quantile(normal_scores, q)
    # plus anomalous-score quantiles, so that scores above every normal one (FPR 0) are resolved too
    anomalous_q = np.quantile(maps[masks], np.linspace(0.0, 1.0, max(2, num_thresholds // 4)))
    thresholds = np.unique(np.r_[normal_q, anomalous_q[anomalous_q >= normal_q[0]]])  # ascending
    nt = thresholds.size

    # level = number of thresholds <= score, so "score >= thresholds[j]" <=> level >= j + 1
    normal_level = np.searchsorted(thresholds, normal_scores, side="right")
    fp_hist = np.bincount(normal_level, minlength=nt + 1)
    fpr = np.cumsum(fp_hist[::-1])[::-1][1:] / normal_scores.size  # fpr[j] = P(normal >= thresholds[j])
    anomalous = region_ids > 0
    rid = region_ids[anomalous] - 1
    level = np.searchsorted(thresholds, maps[anomalous], side="right")
    hist = np.bincount(rid * (nt + 1) + level, minlength=n_regions * (nt + 1)).reshape(n_regions, nt + 1)
    covered = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # covered[r, m] = pixels of r with level >= m
    pro = (covered[:, 1:] / covered[:, :1]).mean(axis=0)  # pro[j] at thresholds[j]
    # from the highest threshold down: FPR rises from (near) 0
    fpr, pro = fpr[::-1], pro[::-1]
    fpr = np.r_[0.0, fpr]
    pro = np.r_[0.0, pro]
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if keep.sum() < fpr.size:  # interpolate at the limit
        j = int(np.argmax(~keep))
        x0, x1, y0, y1 = fpr[j - 1], fpr[j], pro[j - 1], pro[j]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / max(x1 - x0, 1e-12)
        x, y = np.r_[x, fpr_limit], np.r_[y, y_lim]
    return float(_trapezoid(y, x) / fpr_limit)


def image_scores(maps: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """Image-level anomaly scores from score maps (N, H, W): ``mean`` (the paper's), ``max`` or ``top1``
    (mean of the top 1% pixels)."""
    maps = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    if pooling == "mean":
        return maps.mean(axis=1)
    if pooling == "max":
        return maps.max(axis=1)
    if pooling == "top1":
        k = max(1, maps.shape[1] // 100)
        return np.sort(maps, axis=1)[:, -k:].mean(axis=1)
    raise ValueError(f"pooling must be 'mean', 'max' or 'top1', got {pooling!r}")


def evaluate(labels: np.ndarray, masks: np.ndarray | None, maps: np.ndarray, pooling: str = "mean",
             mask_valid: np.ndarray | None = None) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AU-PRO@0.3 in one call.

    ``mask_valid[i]`` False excludes image ``i`` from the pixel metrics (a
    defect image without a ground-truth mask); it still counts for image AUROC.
    """
    out = {"image_auroc": roc_auc(labels, image_scores(maps, pooling))}
    if masks is not None:
        sel = np.ones(len(maps), bool) if mask_valid is None else np.asarray(mask_valid, bool)
        out["pixel_auroc"] = roc_auc(masks[sel], maps[sel])
        out["au_pro"] = au_pro(masks[sel], maps[sel])
    return out
