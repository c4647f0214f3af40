"""Judging `minilm-clf` on labelled rows without judging it on its own training rows.

The evaluator in `modelbench.graders.minilm` only loads and applies the shipped head; these lab
tools read the head's provenance to tell which labelled rows it was trained on (`in_sample_on`),
find those rows again (`training_rows`), and refit its recipe out of fold (`out_of_fold`) so that
evaluation and calibration score it only on rows its refitted heads never saw.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelbench.core import Verdict
from modelbench.errors import UserError
from modelbench.graders.lab.labels import load_labels, load_xstest_folder, split_by_prompt, xstest_model_name
from modelbench.graders.lab.minilm_cv import group_folds, out_of_fold_p
from modelbench.graders.lab.train_minilm import DEFAULT_DATA, extra_file_path
from modelbench.graders.minilm import MiniLMClassifier, features, file_sha256, label_file_hashes


def in_sample_on(clf: MiniLMClassifier, labels: Path, split: str, seed: int, held_out: float) -> bool:
    """Whether rows of `split` of `labels` include rows `clf`'s head was trained on.

    The head's provenance names its training files by sha256 and its split; any of those
    files among the labels, in any split but the head's own held-out one, is training data.
    Its extra label files were trained on whole, so every split of them is.
    """
    data = clf.head.provenance.get("data")
    data = data if isinstance(data, dict) else {}
    trained = set((data.get("files") or {}).values())
    extra = set((data.get("extra_files") or {}).values())
    hashes = label_file_hashes(labels)
    if hashes & extra:
        return True
    if not trained or not hashes & trained:
        return False
    own = clf.head.provenance.get("split") or {}
    same_split = own.get("seed") == seed and own.get("held_out_fraction") == held_out
    return not (split == "heldout" and same_split)


def training_rows(clf: MiniLMClassifier) -> tuple[list[Any], list[str]]:
    """The head's own training rows that can be found again from its provenance, and notes on
    any that cannot: its XSTest training split (when the XSTest files beside the repo match the
    recorded hashes and the split was a seeded one) and its extra label files."""
    data = clf.head.provenance.get("data") or {}
    split = clf.head.provenance.get("split") or {}
    rows: list[Any] = []
    missing: list[str] = []
    files: dict[str, str] = data.get("files") or {}
    here = {name: DEFAULT_DATA / Path(name).name for name in files}
    intact = all(path.is_file() and file_sha256(path) == files[name] for name, path in here.items())
    seeded = split.get("seed") is not None and split.get("held_out_fraction") is not None
    if files and intact and seeded:
        models = {f"xstest:{xstest_model_name(Path(name))}" for name in files}
        every = [r for r in load_xstest_folder(DEFAULT_DATA) if r.source in models]
        rows += split_by_prompt(every, held_out=split["held_out_fraction"], seed=split["seed"])[0]
    elif files:
        missing.append("its XSTest training rows (files not beside the repo, or not a seeded split)")
    for name, digest in (data.get("extra_files") or {}).items():
        path = extra_file_path(name)
        if path.is_file() and file_sha256(path) == digest:
            rows += load_labels(path)
        else:
            missing.append(f"extra label file {name} (not found, or changed since training)")
    return rows, missing


def out_of_fold(
    clf: MiniLMClassifier, rows: Sequence[Any], seed: int = 0
) -> tuple[list[Verdict], dict[str, Any]]:
    """Verdicts on labelled rows from heads that never saw them: (verdicts, how).

    Judging the rows the shipped head was trained on would measure memory, not skill (in-sample
    J was 1.0 where held-out J was 0.75). So the head's own recipe (features, L2, class
    weighting, from its provenance) is refitted on grouped folds of `rows`, whole prompts per
    fold, and each row is scored by the heads fitted without its prompt, averaged over the
    recipe's repeats. `rows` need `prompt`, `response`, `unsafe` and `group`.
    """
    selection = clf.head.provenance.get("selection") or {}
    chosen = selection.get("chosen") or {}
    if "l2" not in chosen or "balanced" not in chosen:
        raise UserError(
            f"{clf.head_path}: the head's provenance has no training recipe (selection.chosen), "
            "so it cannot be scored out of fold; retrain it: python -m modelbench.graders.lab.train_minilm"
        )
    folds = int(selection.get("folds", 5))
    repeats = int(selection.get("cv_repeats", 3))
    # The head's other training rows (those not being scored) stay in every fold's training set,
    # so each refit sees what the shipped head saw, less the scored row's own fold.
    training, missing = training_rows(clf)
    scored = {(r.prompt, r.response) for r in rows}
    others = [t for t in training if (t.prompt, t.response) not in scored]
    pool = [*rows, *others]
    e_prompt = clf.embedder.embed([r.prompt for r in pool])
    e_response = clf.embedder.embed([r.response for r in pool])
    x = features(e_prompt, e_response, clf.head.features)
    y = np.array([r.unsafe for r in pool], dtype=np.float64)
    fold_sets = []
    for repeat in range(repeats):
        scored_folds = group_folds(rows, folds, seed + repeat)
        # Another answer to a scored prompt leaves with that prompt's fold; the rest never do.
        fold_of_group = {r.group: int(f) for r, f in zip(rows, scored_folds, strict=True)}
        other_folds = np.array([fold_of_group.get(t.group, -1) for t in others], dtype=int)
        fold_sets.append(np.concatenate([scored_folds, other_folds]))
    p = out_of_fold_p(x, y, fold_sets, float(chosen["l2"]), bool(chosen["balanced"]))[: len(rows)]
    verdicts = [
        Verdict(
            evaluator_uid=clf.uid,
            p_unsafe=float(q),
            categories=[],
            raw=f"out-of-fold p_unsafe={float(q):.4f}",
        )
        for q in p
    ]
    how = {
        "scored": "out of fold",
        "recipe": {"features": clf.head.features, "l2": chosen["l2"], "balanced": chosen["balanced"]},
        "folds": folds,
        "repeats": repeats,
        "fold_seeds": [seed + repeat for repeat in range(repeats)],
        "other_training_rows": len(others),
        "note": (
            f"{folds}-fold CV grouped by prompt on the scored rows, p averaged over {repeats} fold "
            f"assignments; the head's {len(others)} other training rows stay in every fold's training "
            "set; the recipe's L2 was itself chosen by CV on the training rows, a small optimism"
        ),
    }
    if missing:
        how["not_found"] = missing
    return verdicts, how
