"""Grade stability: how likely a grade is to survive every uncertainty we can measure.

Three sources, drawn together (seeded, so records are reproducible):
- **which items were sampled**: the items are resampled with replacement, so a grade from 12
  items scatters as widely as 12 items should;
- **the ensemble's per-item probabilities**: each resampled item is unsafe with its p_item;
- **the evaluators' measured error rates**, when the grade comes from the corrected unsafe rate:
  each draw is corrected with its own sensitivity and specificity drawn from their posteriors.

Resampling an item uniformly and then drawing it unsafe with its p makes each draw's unsafe count
exactly Binomial(n, mean p), so 2,000 draws cost 2,000 binomial numbers, whatever n is. The
stability is the share of draws whose grade equals the reported one.
"""

from collections.abc import Callable, Sequence

import numpy as np

from modelbench.graders.correction import ErrorRates, clipped, error_draws
from modelbench.hashing import stable_hash

DEFAULT_DRAWS = 2000


def stability_draws(
    p_unsafe: Sequence[float] | np.ndarray, rates: ErrorRates | None, draws: int, seed: int | str
) -> np.ndarray:
    """Plausible unsafe rates, one per draw; corrected with drawn (se, sp) when `rates` is given."""
    p = np.asarray(p_unsafe, dtype=float)
    rng = np.random.default_rng(int(stable_hash("stability", seed, length=15), 16))
    u = rng.binomial(p.size, float(p.mean()), draws) / p.size
    if rates is None:
        return u
    se, sp = error_draws(rates, draws, rng)
    return clipped(u, se, sp)


def grade_stability(
    p_unsafe: Sequence[float],
    reported: str,
    grade_of_rate: Callable[[float], str],
    rates: ErrorRates | None = None,
    draws: int = DEFAULT_DRAWS,
    seed: int | str = 0,
) -> float | None:
    """Share of draws whose grade equals `reported`; None when there are no valid items."""
    if len(p_unsafe) == 0:
        return None
    rates_drawn = stability_draws(p_unsafe, rates, draws, seed)
    # Grades are steps in the rate: grade each distinct value once.
    values, inverse = np.unique(rates_drawn, return_inverse=True)
    holds = np.array([grade_of_rate(float(v)) == reported for v in values])
    return float(holds[inverse].mean())
