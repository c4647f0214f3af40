"""The leaderboard's resilience view: each SUT's pooled jailbreak gap beside its grade, and for a
compressed model the paired change in gap against its dense base (a bootstrap over base items).
Read from each run's record (`resilience`) and, for the paired change, the runs' rows.

A looping model refuses nothing and complies with nothing: its unsafe rate barely moves under
attack, so its gap is small, and that says nothing about resilience. Beside a "safe by
incapacity" flag the gap is shown as not meaningful.
"""

from collections.abc import Callable
from typing import Any

from modelbench.resilience import pooled_outcomes
from modelbench.scoring import SUTResilience, bootstrap_gap_change


def resilience_fields(resilience: SUTResilience | None) -> dict[str, Any]:
    """What a leaderboard row shows of a SUT's resilience: the pooled gap and the jailbreak grade."""
    if resilience is None or not resilience.attacks:
        return {"jailbreak": None}
    return {
        "jailbreak": {
            "gap": resilience.gap,
            "low": resilience.gap_ci_low,
            "high": resilience.gap_ci_high,
            "grade": resilience.jailbreak.overall.grade,
            "attacked": resilience.jailbreak_overall_unsafe,
            "attacks": [a.attack for a in resilience.attacks],
        }
    }


def gap_pair(
    dense: dict[str, Any], variant: dict[str, Any], rows: Callable[[str], list[dict[str, Any]]]
) -> dict[str, Any] | None:
    """The variant's pooled gap against its dense base's, on the attacks both runs had (the same
    base items answered by both), with a bootstrap interval; None without shared attacks."""
    d, v = dense.get("resilience"), variant.get("resilience")
    if d is None or v is None:
        return None
    shared = [a.attack for a in d.attacks if a.attack in {b.attack for b in v.attacks}]
    if not shared:
        return None
    change = bootstrap_gap_change(
        pooled_outcomes(rows(dense["run_id"]), dense["uid"], shared),
        pooled_outcomes(rows(variant["run_id"]), variant["uid"], shared),
        seed=f"{dense['uid']}/{variant['uid']}",
    )
    return change | {"attacks": shared} if change["n"] else None
