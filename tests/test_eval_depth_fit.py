"""The two ``scale&shift`` solvers of the depth protocols: the reference's Adam loop and the exact L1 fit.

The reference's loop is re-implemented here by hand (numpy, no torch optimiser), step by step from the
reference's ``absolute_value_scaling2`` as its video-depth evaluation calls it; the exact optimum is found by
linear programming (scipy), independently of the library's IRLS.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from streamvggt.evaluate.metrics import evaluate_depth, reference_scale_shift

MAX_DEPTH = 9.5


def fixed_sequence() -> tuple[np.ndarray, np.ndarray]:
    """A 3-frame sequence (metres) whose prediction is half the depth, 0.2 m short, with 5 % noise; a few
    ground-truth pixels are invalid (0 or beyond MAX_DEPTH) and must not take part in the fit."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 10.0, size=(3, 8, 10))
    pred = (gt - 0.2) / 2.0 * np.exp(rng.normal(0.0, 0.05, gt.shape))
    gt[0, 0, :3] = 0.0
    return pred, gt


def hand_adam_l1_fit(
    pred: np.ndarray, gt: np.ndarray, lr: float = 1e-4, max_steps: int = 1000, tolerance: float = 1e-6
) -> tuple[float, float, int]:
    """The reference's loop written out: Adam (beta1 0.9, beta2 0.999, eps 1e-8) on sum |s p + t - g| from the
    lower-median ratio and t = 0; after each step, stop when the loss (before the step) moved by < tolerance
    since the previous step's loss. Returns s, t and the number of steps taken."""
    middle = (pred.size - 1) // 2
    params = np.array([np.sort(gt)[middle] / np.sort(pred)[middle], 0.0])
    first, second = np.zeros(2), np.zeros(2)
    previous = None
    for step in range(1, max_steps + 1):
        residual = params[0] * pred + params[1] - gt
        loss = np.abs(residual).sum()
        grad = np.array([(np.sign(residual) * pred).sum(), np.sign(residual).sum()])
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad**2
        params -= lr * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
        if previous is not None and abs(previous - loss) < tolerance:
            break
        previous = loss
    return float(params[0]), float(params[1]), step


def lp_l1_fit(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """argmin_{s,t} sum |s p + t - g| as a linear programme: s p + t - g = u - v with u, v >= 0."""
    n = pred.size
    cost = np.r_[0.0, 0.0, np.ones(2 * n)]
    equality = np.hstack([pred[:, None], np.ones((n, 1)), -np.eye(n), np.eye(n)])
    bounds = [(None, None)] * 2 + [(0, None)] * (2 * n)
    solution = linprog(cost, A_eq=equality, b_eq=gt, bounds=bounds, method="highs")
    assert solution.success
    return float(solution.x[0]), float(solution.x[1])


def metrics_of(aligned: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Sq Rel and log RMSE of already-aligned valid pixels, written out from their definitions."""
    return {
        "sq_rel": float(np.mean((aligned - gt) ** 2 / gt)),
        "log_rmse": float(np.sqrt(np.mean((np.log(np.maximum(aligned, 1e-5)) - np.log(gt)) ** 2))),
    }


def valid_pixels(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = (gt > 0) & (gt < MAX_DEPTH)
    return pred[valid], gt[valid]


def test_reference_fit_equals_the_hand_written_adam_loop():
    pred, gt = fixed_sequence()
    p, g = valid_pixels(pred, gt)
    scale, shift, steps = hand_adam_l1_fit(p, g)
    assert steps == 1000  # lr 1e-4 never gets near the optimum here, so the loop runs to its cap

    scored = evaluate_depth(pred, gt, "scale&shift", max_depth=MAX_DEPTH, fit="reference")

    np.testing.assert_allclose(scored.aligned, scale * pred + shift, rtol=1e-10)
    expected = metrics_of(scale * p + shift, g)
    assert scored.metrics["sq_rel"] == pytest.approx(expected["sq_rel"], rel=1e-9)
    assert scored.metrics["log_rmse"] == pytest.approx(expected["log_rmse"], rel=1e-9)
    assert scored.metrics["valid_pixels"] == p.size == gt.size - 3 - int((gt >= MAX_DEPTH).sum())


def test_reference_fit_stops_when_the_loss_changes_by_less_than_the_tolerance():
    pred, gt = fixed_sequence()
    p, g = valid_pixels(pred, gt)
    scale, shift, steps = hand_adam_l1_fit(p, g, lr=1e-2, tolerance=1e-3)
    assert steps < 1000  # the rule fired

    fitted = reference_scale_shift(_tensor(p), _tensor(g), lr=1e-2, tolerance=1e-3)

    assert float(fitted[0]) == pytest.approx(scale, rel=1e-10)
    assert float(fitted[1]) == pytest.approx(shift, rel=1e-9)
    one_more_step = hand_adam_l1_fit(p, g, lr=1e-2, max_steps=steps + 1, tolerance=0.0)
    assert float(fitted[0]) != pytest.approx(one_more_step[0], rel=1e-12)


def test_exact_fit_is_the_l1_optimum():
    pred, gt = fixed_sequence()
    p, g = valid_pixels(pred, gt)
    scale, shift = lp_l1_fit(p, g)

    scored = evaluate_depth(pred, gt, "scale&shift", max_depth=MAX_DEPTH, fit="exact")

    np.testing.assert_allclose(scored.aligned, scale * pred + shift, rtol=1e-6)


def test_reference_fit_differs_from_the_exact_fit_as_the_independent_solvers_do():
    pred, gt = fixed_sequence()
    p, g = valid_pixels(pred, gt)
    reference_scale, reference_shift, _ = hand_adam_l1_fit(p, g)
    exact_scale, exact_shift = lp_l1_fit(p, g)
    expected_reference = metrics_of(reference_scale * p + reference_shift, g)
    expected_exact = metrics_of(exact_scale * p + exact_shift, g)

    reference = evaluate_depth(pred, gt, "scale&shift", max_depth=MAX_DEPTH, fit="reference").metrics
    exact = evaluate_depth(pred, gt, "scale&shift", max_depth=MAX_DEPTH, fit="exact").metrics

    for key in ("sq_rel", "log_rmse"):
        expected_gap = expected_reference[key] / expected_exact[key] - 1
        assert reference[key] / exact[key] - 1 == pytest.approx(expected_gap, rel=1e-4)
        assert expected_gap > 0.1  # on these inputs the solver alone moves both metrics by more than 10 %


def test_exact_fit_reaches_a_lower_l1_loss_than_the_reference_fit():
    pred, gt = fixed_sequence()
    p, g = valid_pixels(pred, gt)
    valid = (gt > 0) & (gt < MAX_DEPTH)

    losses = {}
    for fit in ("reference", "exact"):
        aligned = evaluate_depth(pred, gt, "scale&shift", max_depth=MAX_DEPTH, fit=fit).aligned
        losses[fit] = float(np.abs(aligned - gt)[valid].sum())

    optimum = lp_l1_fit(p, g)
    assert losses["exact"] == pytest.approx(float(np.abs(optimum[0] * p + optimum[1] - g).sum()), rel=1e-7)
    assert losses["exact"] < 0.97 * losses["reference"]


def test_unknown_fit_is_rejected_with_the_choices():
    pred, gt = fixed_sequence()
    with pytest.raises(ValueError, match="unknown scale&shift fit 'adam': choose one of reference, exact"):
        evaluate_depth(pred, gt, "scale&shift", fit="adam")


def _tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(x)
