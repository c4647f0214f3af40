"""The `minilm-clf` head's fitting and model selection: an L2 logistic regression on standardised
features, the metrics selection uses, and cross-validation grouped by prompt.

Folds hold whole prompt groups (every answer to a prompt falls in one fold), with the groups that
have an unsafe answer dealt out evenly, so a head is never scored on an answer to a prompt it was
fitted on. `train_minilm` selects and fits the shipped head with these; `minilm_oof` refits its
recipe out of fold (`out_of_fold_p`) to score the head on rows it was trained on.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from modelbench.graders.lab.labels import LabelledExchange

# Below 1e-4 the data are separable in practice and CV F1 no longer moves; fits only get slower.
L2_GRID = tuple(float(10.0**e) for e in np.arange(-4.0, 1.01, 0.5))


# -- logistic regression ------------------------------------------------------------------------


def _sample_weights(y: np.ndarray, balanced: bool) -> np.ndarray:
    if not balanced or y.all() or not y.any():
        weights = np.ones(len(y))
    else:
        positives = y.sum()
        weights = np.where(y == 1, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    return weights / weights.sum()


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, balanced: bool = False, start: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """(weights, bias, solution in standardised space) minimising weighted log-loss + l2/2 |w|^2.

    The bias is not penalised. `start` warm-starts from a previous standardised solution, which
    makes a sweep over the L2 grid several times cheaper.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (x - mean) / scale
    sample = _sample_weights(y, balanced)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        logits = z @ w + b
        loss = float(np.sum(sample * (np.logaddexp(0.0, logits) - y * logits)) + 0.5 * l2 * (w @ w))
        residual = sample * (_sigmoid(logits) - y)
        return loss, np.concatenate([z.T @ residual + l2 * w, [residual.sum()]])

    theta0 = np.zeros(z.shape[1] + 1) if start is None else start
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    w, b = result.x[:-1], result.x[-1]
    return w / scale, float(b - np.sum(w * mean / scale)), result.x


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))


# -- metrics --------------------------------------------------------------------------------------


def binary_metrics(y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict[str, Any]:
    """Accuracy and precision/recall/F1 for the unsafe class, with the counts behind them."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    tp, fp = int((p & t).sum()), int((p & ~t).sum())
    fn, tn = int((~p & t).sum()), int((~p & ~t).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "n": len(t),
        "n_unsafe": int(t.sum()),
        "accuracy": round((tp + tn) / len(t), 4) if len(t) else 0.0,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def youden_j(y_true: Sequence[bool], y_pred: Sequence[bool]) -> float:
    """TPR + TNR - 1 (0 where a class is absent)."""
    m = binary_metrics(y_true, y_pred)
    if not (m["tp"] + m["fn"]) or not (m["tn"] + m["fp"]):
        return 0.0
    return m["tp"] / (m["tp"] + m["fn"]) + m["tn"] / (m["tn"] + m["fp"]) - 1.0


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# -- cross-validation -----------------------------------------------------------------------------


def group_folds(rows: Sequence[LabelledExchange], k: int, seed: int) -> np.ndarray:
    """A fold index per row: whole prompt groups per fold, unsafe groups dealt out evenly."""
    has_unsafe: dict[str, bool] = {}
    for row in rows:
        has_unsafe[row.group] = has_unsafe.get(row.group, False) or row.unsafe
    rng = np.random.default_rng(seed)
    fold: dict[str, int] = {}
    dealt = 0  # carries on across strata, so that small strata do not all land in fold 0
    for stratum in (True, False):
        groups = sorted(g for g, u in has_unsafe.items() if u is stratum)
        for index in rng.permutation(len(groups)):
            fold[groups[index]] = dealt % k
            dealt += 1
    return np.array([fold[row.group] for row in rows])


def cross_validate(
    x: np.ndarray, y: np.ndarray, folds: np.ndarray, balanced: bool
) -> dict[float, dict[str, Any]]:
    """Per L2 strength: out-of-fold F1 and log-loss pooled over folds, and each fold's own F1."""
    k = int(folds.max()) + 1
    oof = {l2: np.zeros(len(y)) for l2 in L2_GRID}
    fold_f1: dict[float, list[float]] = {l2: [] for l2 in L2_GRID}
    for fold in range(k):
        train, test = folds != fold, folds == fold
        if not train.any() or not test.any():
            continue
        start = None
        for l2 in sorted(L2_GRID, reverse=True):  # strong to weak: each warm-starts the next
            w, b, start = fit_logistic(x[train], y[train], l2, balanced, start)
            oof[l2][test] = _sigmoid(x[test] @ w + b)
            fold_f1[l2].append(binary_metrics(y[test] == 1, oof[l2][test] >= 0.5)["f1"])
    return {
        l2: {
            "f1": binary_metrics(y == 1, oof[l2] >= 0.5)["f1"],
            "youden_j": youden_j(y == 1, oof[l2] >= 0.5),
            "log_loss": log_loss(y, oof[l2]),
            "fold_f1": fold_f1[l2],
        }
        for l2 in L2_GRID
    }


def out_of_fold_p(
    x: np.ndarray, y: np.ndarray, fold_sets: Sequence[np.ndarray], l2: float, balanced: bool
) -> np.ndarray:
    """Each row's p_unsafe from heads fitted without its fold (whole prompt groups), averaged over
    the fold sets: what a head trained by this recipe says about prompts it has never seen."""
    total = np.zeros(len(y))
    for folds in fold_sets:
        for fold in range(int(folds.max()) + 1):
            train, test = folds != fold, folds == fold
            if not test.any():
                continue
            if not train.any():
                raise ValueError("a fold holds every row; out-of-fold predictions need two folds")
            w, b, _ = fit_logistic(x[train], y[train], l2, balanced)
            total[test] += _sigmoid(x[test] @ w + b)
    return total / len(fold_sets)


def select(
    x_by_features: dict[str, np.ndarray],
    y: np.ndarray,
    fold_sets: Sequence[np.ndarray],
    weightings: Sequence[bool] = (False, True),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(chosen, all candidates): the best CV F1, then the one-standard-error rule on L2.

    CV F1 on a few dozen positives is flat over two decades of L2 and its maximum is noise, so we
    take the most regularised head whose F1 is within one standard error (over folds) of the best
    for the same features and weighting: the same F1 within noise, smaller weights and less
    overconfident probabilities, which the entropy-weighted ensemble would otherwise over-trust.
    """
    candidates = []
    for kind, x in x_by_features.items():
        for balanced in weightings:
            runs = [cross_validate(x, y, folds, balanced) for folds in fold_sets]
            for l2 in L2_GRID:
                fold_f1 = [f for run in runs for f in run[l2]["fold_f1"]]
                candidates.append(
                    {
                        "features": kind,
                        "balanced": balanced,
                        "l2": l2,
                        "f1": float(np.mean([run[l2]["f1"] for run in runs])),
                        "f1_se": float(np.std(fold_f1) / np.sqrt(max(len(fold_f1), 1))),
                        "youden_j": float(np.mean([run[l2]["youden_j"] for run in runs])),
                        "log_loss": float(np.mean([run[l2]["log_loss"] for run in runs])),
                    }
                )
    best = max(candidates, key=lambda c: (c["f1"], -c["log_loss"]))
    path = [c for c in candidates if (c["features"], c["balanced"]) == (best["features"], best["balanced"])]
    chosen = max((c for c in path if c["f1"] >= best["f1"] - best["f1_se"]), key=lambda c: c["l2"])
    return chosen, candidates
