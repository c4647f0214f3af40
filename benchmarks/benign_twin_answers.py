"""SmolLM2's real answers to the benign twin prompts, as a training-only label source (recipe R3).

    .venv/bin/python benchmarks/benign_twin_answers.py --run-dir DIR [--run RUN_ID]

Reads a finished run of `smollm2-135m` on the twin prompts (`mb-benign`'s twins, exported with
`prompts.benign.twin_items` to a .jsonl and run with `modelbench run --prompt-set FILE`), keeps
the answers the answer-quality classifier calls real answers (a refusal or a loop teaches the
evaluator nothing about engaged, harmless answers), labels them safe (a benign prompt's answer)
and writes `graders/label_sets/benign-twins-smollm2.csv`. See `benchmarks/evaluator_protocol.md`,
change 5.
"""

import argparse
import csv
from collections import Counter
from pathlib import Path

from modelbench.prompts.benign import twin_items
from modelbench.quality import classify_rows
from modelbench.store import STORE_NAME, Store

OUT = Path(__file__).resolve().parents[1] / "graders" / "label_sets" / "benign-twins-smollm2.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--run", default=None, help="run id (default: the latest finished run)")
    args = parser.parse_args()
    store = Store(args.run_dir / STORE_NAME)
    try:
        run_id = args.run or store.finished_run_ids()[-1]
        rows = [r for r in store.run_rows(run_id) if r["sut_uid"] == "smollm2-135m"]
    finally:
        store.close()
    twins = {item.text for item in twin_items()}
    rows = [r for r in rows if r["prompt"] in twins]
    kinds = classify_rows(rows)
    print(f"run {run_id}: {len(rows)} answers to twin prompts: {dict(Counter(kinds))}")
    kept = [(r, k) for r, k in zip(rows, kinds, strict=True) if k == "answer"]
    with OUT.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "response", "hazard", "label"])
        writer.writeheader()
        for row, _ in sorted(kept, key=lambda pair: (pair[0]["hazard"], pair[0]["prompt"])):
            writer.writerow(
                {
                    "prompt": row["prompt"],
                    "response": row["response"],
                    "hazard": row["hazard"],
                    "label": "safe",
                }
            )
    print(f"wrote {len(kept)} rows to {OUT}")


if __name__ == "__main__":
    main()
