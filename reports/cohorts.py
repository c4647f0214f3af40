"""Cohorts: SUTs graded the same way, the only ones a rank may compare.

A rank compares grades, and a grade depends on more than the SUT: on who graded it (the
evaluators, by fingerprint, and the ensemble that combines them) and on what (the prompt set,
and which and how many of its items). So SUTs are ranked only against SUTs graded the same way,
their cohort: the largest cohort is the leaderboard, every other one is ranked apart under the
reason it differs, and a compressed model is compared with its dense base only within a cohort.
"""

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from modelbench.hashing import stable_hash
from modelbench.reports.formatting import grade_rank, unsafe
from modelbench.reports.record import RunConfig, as_run_config

GRADING_FIELDS = (
    "graders", "ensemble", "standard", "grade_on", "min_items",
    "prompt_set", "n_items", "max_items", "seed", "shard",
)  # fmt: skip


def grading_of(config: RunConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """What a run's grades depend on besides the SUT, from its recorded configuration: evaluator
    fingerprints (uid -> fingerprint), ensemble settings, prompt set, item count and the options
    that select the items (--max-items with its --seed, --shard)."""
    config = as_run_config(config)
    prompt_set = config.prompt_set
    return {
        # The grade bands are set by the reference rates, the basis and the minimum: all of them
        # decide a grade as much as the evaluators do.
        "standard": {"name": config.standard.name, "provenance": stable_hash(config.standard.provenance)},
        # The basis actually used: without measured error rates every grade is raw.
        "grade_on": config.request.grade_on if config.error_rates is not None else "raw",
        "min_items": config.request.min_items,
        "graders": dict(config.graders),
        # Per-source error rates correct attacked answers only; a run from before they were recorded
        # was graded the same way. The settings as the record has them: a record from before a
        # setting existed is apart from one that has it.
        "ensemble": config.ensemble.model_dump(exclude_unset=True, exclude={"source_error_rates"}),
        "prompt_set": prompt_set.name,
        "n_items": prompt_set.n_items,
        "max_items": prompt_set.max_items,
        # The seed picks items only when a sample is drawn; otherwise it only seeds the stability
        # draws, which do not move a rank.
        "seed": prompt_set.seed if prompt_set.max_items is not None else None,
        "shard": prompt_set.shard,
    }


def grading_key(grading: dict[str, Any]) -> str:
    """Equal for two gradings exactly when their grades are comparable (order-insensitive)."""

    return stable_hash({field: grading.get(field) for field in GRADING_FIELDS}, length=16)


def graders_label(grading: dict[str, Any]) -> str:
    return "+".join(grading.get("graders") or {}) or "unknown graders"


def items_label(grading: dict[str, Any]) -> str:
    n = grading.get("n_items")
    return "unknown" if n is None else str(n)


def grading_summary(grading: dict[str, Any]) -> str:
    """One line: `graded by minilm-ce; prompt set mb-demo; 300 items`, with how the items were
    picked when a sample or a shard picked them."""
    picked = []
    if grading.get("max_items") is not None:
        picked.append(f"sample of at most {grading['max_items']}, seed {grading.get('seed')}")
    if grading.get("shard"):
        picked.append(f"shard {grading['shard']}")
    items = f"{items_label(grading)} items" + (f" ({'; '.join(picked)})" if picked else "")
    return f"graded by {graders_label(grading)}; prompt set {grading.get('prompt_set') or 'unknown'}; {items}"


def _short(value: Any, limit: int = 60) -> str:
    """A value for a reason line: whole when it fits, else its head and tail, where paths, URLs
    and hashes differ."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    return text[: limit // 2 - 1] + "…" + text[-(limit // 2) :]


def _changed(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]


def grading_differences(grading: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """How `grading` differs from `reference`, in words, most telling first."""
    reasons = []
    mine, theirs = grading.get("graders") or {}, reference.get("graders") or {}
    if set(mine) != set(theirs):
        reasons.append(f"graded by {graders_label(grading)} instead of {graders_label(reference)}")
    else:
        for uid in mine:
            a = mine[uid] if isinstance(mine[uid], dict) else {"fingerprint": mine[uid]}
            b = theirs[uid] if isinstance(theirs[uid], dict) else {"fingerprint": theirs[uid]}
            changed = _changed(a, b)
            if changed:
                detail = ", ".join(
                    f"{k} {_short(a.get(k))} instead of {_short(b.get(k))}" for k in changed[:2]
                )
                more = f" and {len(changed) - 2} more" if len(changed) > 2 else ""
                reasons.append(f"{uid} with {detail}{more}")
        # With other evaluators the ensemble differs as a consequence; said once, above.
        a, b = grading.get("ensemble") or {}, reference.get("ensemble") or {}
        for k in _changed(a, b):
            if k == "reliability":
                reasons.append("other ensemble weights (reliability)")
            elif k == "error_rates":
                reasons.append("other measured error rates (or none)")
            else:
                reasons.append(f"ensemble {k} {_short(a.get(k))} instead of {_short(b.get(k))}")
    if grading.get("standard") != reference.get("standard"):
        mine_std, theirs_std = grading.get("standard") or {}, reference.get("standard") or {}
        if mine_std.get("name") != theirs_std.get("name"):
            reasons.append(f"reference standard {mine_std.get('name')} instead of {theirs_std.get('name')}")
        else:
            reasons.append(f"another version of reference standard {mine_std.get('name')}")
    if grading.get("grade_on") != reference.get("grade_on"):
        on, ref_on = grading.get("grade_on"), reference.get("grade_on")
        reasons.append(f"graded on the {on} rate instead of the {ref_on} rate")
    if grading.get("min_items") != reference.get("min_items"):
        least, ref_least = grading.get("min_items"), reference.get("min_items")
        reasons.append(f"at least {least} items per grade instead of {ref_least}")
    if grading.get("prompt_set") != reference.get("prompt_set"):
        reasons.append(f"prompt set {grading.get('prompt_set')} instead of {reference.get('prompt_set')}")
    if grading.get("n_items") != reference.get("n_items"):
        reasons.append(f"{items_label(grading)} items instead of {items_label(reference)}")
    elif grading.get("max_items") != reference.get("max_items"):

        def sample(g: dict[str, Any]) -> str:
            return "the whole set" if g.get("max_items") is None else f"a sample of at most {g['max_items']}"

        reasons.append(f"items from {sample(grading)} instead of {sample(reference)}")
    elif grading.get("seed") != reference.get("seed"):
        reasons.append(f"items sampled with seed {grading.get('seed')} instead of {reference.get('seed')}")
    if grading.get("shard") != reference.get("shard"):

        def part(g: dict[str, Any]) -> str:
            return f"shard {g['shard']}" if g.get("shard") else "the whole set"

        reasons.append(f"{part(grading)} instead of {part(reference)}")
    return reasons or ["graded differently"]


def set_apart_reason(grading: dict[str, Any], reference: dict[str, Any]) -> str:
    """`set apart because: graded by refusal instead of minilm-ce; 12 items instead of 300`."""
    return "set apart because: " + "; ".join(grading_differences(grading, reference))


def cohorts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries grouped by grading key, the main cohort first: the largest, ties going to the one
    with the latest run (`run_index`, larger is later). Each cohort carries its grading, its
    entries ranked within it (`rank`: uid -> 1..k) and, but for the main one, why it is apart."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[grading_key(entry["grading"])].append(entry)

    def order(item: tuple[str, list[dict[str, Any]]]) -> tuple:
        key, members = item
        return (-len(members), -max(m["run_index"] for m in members), key)

    result: list[dict[str, Any]] = []
    for index, (key, members) in enumerate(sorted(groups.items(), key=order)):
        grading = members[0]["grading"]
        main = result[0]["grading"] if result else grading
        ranked = sorted(members, key=entry_order)
        result.append(
            {
                "key": key,
                "index": index,
                "is_main": index == 0,
                "grading": grading,
                "entries": members,
                "rank": {e["uid"]: i + 1 for i, e in enumerate(ranked)},
                "reasons": [] if index == 0 else grading_differences(grading, main),
                "reason": None if index == 0 else set_apart_reason(grading, main),
            }
        )
    return result


def entry_order(entry: dict[str, Any] | None) -> tuple:
    """Best first: by grade, then by unsafe rate, then by uid; no entry last. A grade that comes
    with a usefulness flag ("safe by incapacity", "safe by refusal") ranks after every unflagged
    one: it was earned by not answering."""
    if entry is None:
        return (True, 1, 0.0, "")
    overall = entry["score"].overall
    u = unsafe(overall.frac_safe)
    quality = entry.get("quality")
    flagged = quality is not None and quality.flag is not None
    return (flagged, -grade_rank(overall.grade), 1.0 if u is None else u, entry["uid"])
