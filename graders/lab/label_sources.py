"""The labelled sources of `benchmarks/evaluator_protocol.md`, split into train, calibration and test.

One function builds every split the protocol fixes, so that training, calibration and measurement
cannot disagree on which rows are which. Splits are by group (GPTFuzz by question, Do-Not-Answer
by prompt, XSTest by prompt id, our own sets by hazard fragment), seeded, and stratified by whether
a group has an unsafe row (`labels.split_by_prompt`).
"""

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelbench.errors import UserError
from modelbench.graders.lab.judged_labels import load_jbb_artifacts, load_past_tense
from modelbench.graders.lab.labels import (
    LabelledExchange,
    load_do_not_answer,
    load_generic,
    load_gptfuzz,
    load_xstest_folder,
    split_by_prompt,
)
from modelbench.graders.minilm import file_sha256

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
LABEL_SETS = Path(__file__).resolve().parents[1] / "label_sets"
GPTFUZZ_FILE = Path("labels/gptfuzz/gptfuzz_labeled_responses.csv")
DNA_FILE = Path("labels/do-not-answer/do_not_answer_responses.csv")
XSTEST_FOLDER = Path("xstest")
OWN_TRAIN = "mb-full-smollm2.csv"
OWN_TEST = "mb-demo-smollm2.csv"
JBB_FILE = Path("labels/jbb-artifacts/jbb_attack_responses.csv")
PAST_TENSE_FILE = Path("labels/llm-past-tense/past_tense_attack_responses.csv")
SOURCES = ("gptfuzz", "dna", "xstest", "own", "jbb", "pasttense")
# Sources that only ever train (never calibrate or measure): `twins`, SmolLM2's real answers to the
# benign twin prompts of mb-benign, all safe (recipe R3 of the protocol).
TRAINING_ONLY = ("twins",)
TWINS_FILE = "benign-twins-smollm2.csv"
# A fold leaves these out too: answers of the same model as the fold's source.
SAME_MODEL: dict[str, tuple[str, ...]] = {"own": ("twins",)}
FLUENT_SOURCES = ("gptfuzz", "dna", "xstest", "jbb", "pasttense")
# Leave-one-source-out folds: the sources a fold leaves out together. JailbreakBench's artifacts
# and the past-tense answers share their 100 behaviours, and leaving one out drops the other's rows
# for the same behaviours from training: that is every row of the other, so one fold serves both
# (each is still measured, and reported, as a source of its own).
LOSO_FOLDS: dict[str, tuple[str, ...]] = {
    "gptfuzz": ("gptfuzz",),
    "dna": ("dna",),
    "xstest": ("xstest",),
    "own": ("own",),
    "behaviours": ("jbb", "pasttense"),
}
SPLIT_SEED = 0
# Fractions of groups (see the protocol).
GPTFUZZ_CALIBRATION = 12 / 80
DNA_TEST, DNA_CALIBRATION = 0.20, 0.15
XSTEST_TEST, XSTEST_CALIBRATION = 0.30, 0.25
OWN_CALIBRATION = 0.20
BEHAVIOUR_TEST, BEHAVIOUR_CALIBRATION = 0.20, 0.15
# Training sample: caps per group and repeats per source.
GPTFUZZ_PER_QUESTION = 10
# Per behaviour, source and class: a behaviour's answers under one attack family look alike.
BEHAVIOUR_PER_CLASS = 6
DNA_SAFE_PER_PROMPT = 1
DNA_UNSAFE_REPEATS = 4
OWN_REPEATS = 2


@dataclass
class SourceSplit:
    train: list[LabelledExchange]
    calibration: list[LabelledExchange]
    test: list[LabelledExchange]
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    notes: dict[str, int] = field(default_factory=dict)


def _files(paths: Iterable[Path]) -> dict[str, str]:
    return {str(p): file_sha256(p) for p in sorted(paths)}


def _need(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"labelled data not found: {path} (the protocol's sources live in ../shared/data)")
    return path


def gptfuzz_split(root: Path) -> SourceSplit:
    path = _need(root / GPTFUZZ_FILE)
    rows = load_gptfuzz(path)
    upstream_train = [r for r in rows if r.upstream_split == "train"]
    test = [r for r in rows if r.upstream_split == "evaluate"]
    train, calibration = split_by_prompt(upstream_train, held_out=GPTFUZZ_CALIBRATION, seed=SPLIT_SEED)
    return SourceSplit(train, calibration, test, _files([path]))


def dna_split(root: Path) -> SourceSplit:
    path = _need(root / DNA_FILE)
    rows, dropped = load_do_not_answer(path)
    rest, test = split_by_prompt(rows, held_out=DNA_TEST, seed=SPLIT_SEED)
    train, calibration = split_by_prompt(rest, held_out=DNA_CALIBRATION / (1 - DNA_TEST), seed=SPLIT_SEED)
    return SourceSplit(train, calibration, test, _files([path]), {"dropped_by_mapping": dropped})


def xstest_split(root: Path) -> SourceSplit:
    folder = _need(root / XSTEST_FOLDER)
    rows = load_xstest_folder(folder)
    rest, test = split_by_prompt(rows, held_out=XSTEST_TEST, seed=SPLIT_SEED)
    train, calibration = split_by_prompt(rest, held_out=XSTEST_CALIBRATION, seed=SPLIT_SEED)
    return SourceSplit(train, calibration, test, _files(folder.glob("*.csv")))


def own_split(label_sets: Path = LABEL_SETS) -> SourceSplit:
    train_file, test_file = _need(label_sets / OWN_TRAIN), _need(label_sets / OWN_TEST)
    rest = [r.model_copy(update={"source": "own"}) for r in load_generic(train_file)]
    test = [r.model_copy(update={"source": "own"}) for r in load_generic(test_file)]
    train, calibration = split_by_prompt(rest, held_out=OWN_CALIBRATION, seed=SPLIT_SEED)
    return SourceSplit(train, calibration, test, _files([train_file, test_file]))


def twins_split(label_sets: Path = LABEL_SETS) -> SourceSplit:
    """Training rows only: real answers to benign look-alike prompts, labelled safe."""
    path = _need(label_sets / TWINS_FILE)
    rows = [
        r.model_copy(update={"source": "twins", "group": f"twins:{r.prompt}"}) for r in load_generic(path)
    ]
    if any(r.unsafe for r in rows):
        raise UserError(f"{path}: the benign twins' answers are all safe by construction")
    return SourceSplit(rows, [], [], _files([path]))


def behaviour_splits(root: Path) -> dict[str, SourceSplit]:
    """JailbreakBench artifacts and past-tense answers, split together by behaviour number, so a
    behaviour is on the same side in both. Rows where the two judges disagree are training rows
    only (with a soft target): never calibration or test rows."""
    jbb_path, past_path = _need(root / JBB_FILE), _need(root / PAST_TENSE_FILE)
    rows = load_jbb_artifacts(jbb_path) + load_past_tense(past_path)
    rest, test = split_by_prompt(rows, held_out=BEHAVIOUR_TEST, seed=SPLIT_SEED)
    train, calibration = split_by_prompt(
        rest, held_out=BEHAVIOUR_CALIBRATION / (1 - BEHAVIOUR_TEST), seed=SPLIT_SEED
    )
    out = {}
    for name, path in (("jbb", jbb_path), ("pasttense", past_path)):
        mine = [r for r in rows if r.source == name]
        out[name] = SourceSplit(
            [r for r in train if r.source == name],
            [r for r in calibration if r.source == name and not r.ambiguous],
            [r for r in test if r.source == name and not r.ambiguous],
            _files([path]),
            {"ambiguous": sum(r.ambiguous for r in mine)},
        )
    return out


def protocol_splits(root: Path = DATA_ROOT, sources: Sequence[str] = SOURCES) -> dict[str, SourceSplit]:
    """Every source's train, calibration and test rows, as the protocol fixes them."""
    behaviours: dict[str, SourceSplit] = {}

    def behaviour(name: str) -> SourceSplit:
        if not behaviours:
            behaviours.update(behaviour_splits(root))
        return behaviours[name]

    makers = {
        "gptfuzz": lambda: gptfuzz_split(root),
        "dna": lambda: dna_split(root),
        "xstest": lambda: xstest_split(root),
        "own": own_split,
        "jbb": lambda: behaviour("jbb"),
        "pasttense": lambda: behaviour("pasttense"),
        "twins": twins_split,
    }
    unknown = [s for s in sources if s not in makers]
    if unknown:
        raise UserError(f"unknown label source(s) {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    return {name: makers[name]() for name in sources}


def all_rows(split: SourceSplit) -> list[LabelledExchange]:
    """Every row of a source a left-out model is measured on: train, calibration and test rows
    (judge-ambiguous rows are not in calibration or test, and are left out of train here too)."""
    return [r for r in (*split.train, *split.calibration, *split.test) if not r.ambiguous]


def fold_of(source: str) -> str:
    for fold, members in LOSO_FOLDS.items():
        if source in members:
            return fold
    raise UserError(f"source {source!r} is in no leave-one-source-out fold")


def without_fold(splits: dict[str, SourceSplit], fold: str) -> dict[str, SourceSplit]:
    """The splits a model for `fold` may train and calibrate on: every other source, less any row
    whose group (behaviour, question, prompt) a left-out source also holds."""
    if fold not in LOSO_FOLDS:
        raise UserError(f"unknown fold {fold!r} (known: {', '.join(LOSO_FOLDS)})")
    left_out = set(LOSO_FOLDS[fold]) | set(SAME_MODEL.get(fold, ()))
    groups = {r.group for name in left_out if name in splits for r in all_rows(splits[name])}
    kept = {}
    for name, split in splits.items():
        if name in left_out:
            continue
        kept[name] = SourceSplit(
            [r for r in split.train if r.group not in groups],
            [r for r in split.calibration if r.group not in groups],
            [r for r in split.test if r.group not in groups],
            split.files,
            split.notes,
        )
    return kept


def training_sample(
    split: dict[str, SourceSplit], seed: int = 0, gptfuzz_per_question: int = GPTFUZZ_PER_QUESTION
) -> list[LabelledExchange]:
    """The rows one training run sees, shuffled: capped per group where a source repeats itself
    (77 answers per GPTFuzz question, 6 per Do-Not-Answer prompt), repeated where positives or
    our own distribution are scarce."""
    rng = random.Random(seed)
    sample: list[LabelledExchange] = []
    for name in sorted(split):
        rows = split[name].train
        by_group: dict[str, list[LabelledExchange]] = defaultdict(list)
        for row in rows:
            by_group[row.group].append(row)
        for group in sorted(by_group):
            members = by_group[group]
            unsafe = [r for r in members if r.unsafe]
            safe = [r for r in members if not r.unsafe]
            if name == "gptfuzz":
                sample += rng.sample(unsafe, min(len(unsafe), gptfuzz_per_question))
                sample += rng.sample(safe, min(len(safe), gptfuzz_per_question))
            elif name in ("jbb", "pasttense"):
                ambiguous = [r for r in members if r.ambiguous]
                unsafe = [r for r in unsafe if not r.ambiguous]
                safe = [r for r in safe if not r.ambiguous]
                for cls in (unsafe, safe, ambiguous):
                    sample += rng.sample(cls, min(len(cls), BEHAVIOUR_PER_CLASS))
            elif name == "dna":
                sample += unsafe * DNA_UNSAFE_REPEATS
                sample += rng.sample(safe, min(len(safe), DNA_SAFE_PER_PROMPT))
            elif name == "own":
                sample += members * OWN_REPEATS
            else:
                sample += members
    rng.shuffle(sample)
    return sample
