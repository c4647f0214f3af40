"""A run's answer quality: classify every stored answer and score usefulness per SUT.

The glue between the classifier (`modelbench.graders.answer_quality`), the rules
(`modelbench.scoring.usefulness`) and the store: it reads a run's per-item rows (prompt, answer,
hazard, whether the prompt is benign), so the runner and `rescore` compute the same thing from the
same stored answers. An answer the provider's content filter stopped counts as a refusal; an item
whose response failed has no kind and counts nowhere (it already counts as invalid in the grade).
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from modelbench.core import is_attacked, is_benign
from modelbench.graders import AnswerQualityClassifier, QualityModel, load_quality_model
from modelbench.hazards import load_taxonomy
from modelbench.scoring import AnswerKind, ErrorRates, QualityItem, SUTQuality, score_quality


def quality_error_rates(model: QualityModel) -> dict[str, ErrorRates]:
    """Each decision's measured error counts (held-out labels) as the correction reads them."""
    return {decision: ErrorRates.model_validate(counts) for decision, counts in model.error_rates.items()}


def classify_rows(
    rows: list[Mapping[str, Any]], classifier: AnswerQualityClassifier | None = None
) -> list[AnswerKind | None]:
    """The kind of each row's answer, in order; None where the response failed."""
    classifier = classifier or AnswerQualityClassifier(load_quality_model())
    kinds: list[AnswerKind | None] = [None] * len(rows)
    answered = []
    for index, row in enumerate(rows):
        if row["outcome"] == "content_filter":
            kinds[index] = "refusal"
        elif row["outcome"] == "ok" and row["response"] is not None:
            answered.append(index)
    found = classifier.classify(
        [rows[i]["prompt"] for i in answered], [rows[i]["response"] for i in answered]
    )
    for index, kind in zip(answered, found, strict=True):
        kinds[index] = kind
    return kinds


def run_quality(
    rows: Iterable[Mapping[str, Any]],
    classifier: AnswerQualityClassifier | None = None,
    seed: int | str = 0,
) -> list[SUTQuality]:
    """Usefulness scores per SUT (in the rows' order of SUTs) from a run's rows (`Store.run_rows`)."""
    # Attacked prompts' answers are the resilience section's; usefulness is about plain prompts.
    rows = [row for row in rows if not is_attacked(row["source"])]
    classifier = classifier or AnswerQualityClassifier(load_quality_model())
    kinds = classify_rows(rows, classifier)
    by_sut: dict[str, list[QualityItem]] = defaultdict(list)
    locales: dict[str, set[str]] = defaultdict(set)
    for row, kind in zip(rows, kinds, strict=True):
        by_sut[row["sut_uid"]].append(
            QualityItem(
                item_uid=row["item_uid"], hazard=row["hazard"], benign=is_benign(row["source"]), kind=kind
            )
        )
        locales[row["sut_uid"]].add(str(row.get("locale") or "en_US"))
    rates = quality_error_rates(classifier.model)
    order = load_taxonomy().hazard_uids
    scored = [score_quality(sut, items, rates, order, seed) for sut, items in by_sut.items()]
    fingerprint = classifier.fingerprint()
    return [
        s.model_copy(
            update={
                "unmeasured_locales": unmeasured(locales[s.sut_uid], classifier.languages),
                "classifier": fingerprint,
            }
        )
        for s in scored
    ]


def unmeasured(locales: set[str], languages: tuple[str, ...]) -> list[str]:
    """The locales whose language the classifier's labels do not cover."""
    return sorted(loc for loc in locales if loc.replace("-", "_").split("_")[0].lower() not in languages)
