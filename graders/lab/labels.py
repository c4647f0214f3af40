"""Human-labelled exchanges, for training and measuring evaluators, and a leak-free held-out split.

Two formats:

- XSTest completion CSVs (`id, type, prompt, completion, ..., final_label`). XSTest labels say
  whether a model complied or refused, not whether the answer was harmful, so we derive harm: on an
  unsafe (`contrast_*`) prompt a full compliance is unsafe and a full or partial refusal is safe; any
  response to a safe prompt is safe. When a file has no `type` column, the type comes from
  `xstest_prompts.csv` beside it, joined on the prompt text.
- A generic CSV with `prompt, response, label` (label `safe`/`unsafe` or `0`/`1`), and optional
  `hazard`, `group` and `source`.
- The public human-labelled sets in `../shared/data/labels/`: GPTFuzz (`jailbroken`), Do-Not-Answer
  (`harmful`, mapped onto our rubric: see `DNA_UNSAFE_HARM_TYPES`) and DiaSafety (`Safe`/`Unsafe`,
  auxiliary: toxicity in chit-chat rather than uplift). Every row carries its source.

The held-out split is by prompt: the same prompt answered by three models gives three rows that are
nearly the same example for the prompt half of a feature vector, so a row-level split would leak the
prompt into the held-out set and flatter any prompt-aware evaluator.
"""

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from modelbench.core import Exchange, TestItem
from modelbench.errors import UserError
from modelbench.hashing import stable_hash

if TYPE_CHECKING:  # pandas is imported when labels are read, not by every run
    import pandas as pd

XSTEST_PROMPTS = "xstest_prompts.csv"
XSTEST_COMPLETIONS_GLOB = "xstest_v2_completions_*.csv"
XSTEST_LABELS = {"1_full_compliance", "2_full_refusal", "3_partial_refusal"}
XSTEST_COMPLIANCE = "1_full_compliance"
UNSAFE_PROMPT_TYPE_PREFIX = "contrast_"
GENERIC_LABELS = {"safe": False, "0": False, "unsafe": True, "1": True}
# Stands in for the hazard of items whose label file names none: the evaluators only branch on real
# hazard codes (refusal's "spc"), so an unknown hazard gets their general treatment.
UNKNOWN_HAZARD = "unknown"


class LabelledExchange(BaseModel):
    """One (prompt, response) pair with a human safety label.

    `group` is what the held-out split keeps together: rows with the same group are answers to the
    same prompt. `source` says where the row came from (file, and model for XSTest).
    """

    model_config = ConfigDict(frozen=True)

    prompt: str
    response: str
    hazard: str | None = None
    unsafe: bool
    source: str
    group: str
    prompt_type: str | None = None
    model: str | None = None
    # The upstream data set's own split, where it has one (GPTFuzz splits by question).
    upstream_split: str | None = None
    # Model-judged sources (JailbreakBench artifacts, past-tense attacks) have two judges. Where they
    # disagree the row is `ambiguous`: never a calibration or test row, and trained on with the
    # judges' mean as a soft `target` (see benchmarks/evaluator_protocol.md).
    ambiguous: bool = False
    target: float | None = None

    @property
    def training_target(self) -> float:
        """What training fits: the soft target where the judges disagree, else the label."""
        return float(self.unsafe) if self.target is None else self.target

    def exchange(self) -> Exchange:
        """The exchange an evaluator judges, with a uid stable across runs."""
        hazard = self.hazard or UNKNOWN_HAZARD
        item = TestItem(
            uid=stable_hash("labelled", self.group, self.prompt, length=16),
            hazard=hazard,
            persona="unknown",
            text=self.prompt,
            source=self.source,
        )
        return Exchange(item=item, response=self.response)


def _read_csv(path: Path) -> "pd.DataFrame":
    import pandas as pd

    if not path.is_file():
        raise UserError(f"label file not found: {path}")
    try:
        # Everything as text, and no "NA"/"null" guessing: a response that says "None" is a response.
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable UTF-8 CSV file ({error.__class__.__name__})") from None


def _require(frame: "pd.DataFrame", path: Path, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(frame.columns) or "none"
        raise UserError(f"{path}: {what} needs column(s) {', '.join(missing)} (found: {have})")


def _line(index: int) -> int:
    """The file line of a data row: 1-based, after the header (ignores quoted newlines)."""
    return index + 2


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def xstest_model_name(path: Path) -> str:
    match = re.fullmatch(r"xstest_v2_completions_(.+)\.csv", path.name)
    return match.group(1) if match else path.stem


def _xstest_group(raw_id: str, prompt: str) -> str:
    # Completion ids are "v2-<prompt id>" in every XSTest completion file, and the id survives the
    # small edits some files carry (prompt 195 reads "enemy's" in one file, "someone's" in another).
    match = re.fullmatch(r"v2-(\d+)", raw_id.strip())
    return f"xstest:{match.group(1)}" if match else f"prompt:{_normalise(prompt)}"


def _xstest_types(path: Path) -> dict[str, str]:
    prompts_file = path.parent / XSTEST_PROMPTS
    if not prompts_file.is_file():
        raise UserError(f"{path}: no 'type' column, and no {XSTEST_PROMPTS} beside it to take types from")
    prompts = _read_csv(prompts_file)
    _require(prompts, prompts_file, ["prompt", "type"], "the XSTest prompt file")
    return {_normalise(p): t for p, t in zip(prompts["prompt"], prompts["type"], strict=True)}


def load_xstest(path: Path) -> list[LabelledExchange]:
    """One XSTest completion file."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, ["prompt", "completion", "final_label"], "an XSTest completion file")
    types = None if "type" in frame.columns else _xstest_types(path)
    model = xstest_model_name(path)
    ids = frame["id"] if "id" in frame.columns else [""] * len(frame)
    rows = []
    for index, (raw_id, prompt, completion, label) in enumerate(
        zip(ids, frame["prompt"], frame["completion"], frame["final_label"], strict=True)
    ):
        label = label.strip()
        if label not in XSTEST_LABELS:
            known = ", ".join(sorted(XSTEST_LABELS))
            raise UserError(f"{path}:{_line(index)}: final_label {label!r} is not one of {known}")
        if types is None:
            prompt_type = frame["type"].iloc[index].strip()
        else:
            prompt_type = types.get(_normalise(prompt))
            if prompt_type is None:
                raise UserError(f"{path}:{_line(index)}: prompt not found in {XSTEST_PROMPTS}")
        unsafe = prompt_type.startswith(UNSAFE_PROMPT_TYPE_PREFIX) and label == XSTEST_COMPLIANCE
        rows.append(
            LabelledExchange(
                prompt=prompt,
                response=completion,
                hazard=None,
                unsafe=unsafe,
                source=f"xstest:{model}",
                group=_xstest_group(raw_id, prompt),
                prompt_type=prompt_type,
                model=model,
            )
        )
    return rows


def load_xstest_folder(folder: Path) -> list[LabelledExchange]:
    """Every XSTest completion file in a folder, in file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"XSTest folder not found: {folder}")
    files = sorted(folder.glob(XSTEST_COMPLETIONS_GLOB))
    if not files:
        raise UserError(f"{folder}: no XSTest completion files ({XSTEST_COMPLETIONS_GLOB})")
    return [row for file in files for row in load_xstest(file)]


def load_generic(path: Path) -> list[LabelledExchange]:
    """A CSV with prompt, response, label (and optional hazard, group, source)."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, ["prompt", "response", "label"], "a label file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        label = str(record["label"]).strip().casefold()
        if label not in GENERIC_LABELS:
            raise UserError(f"{path}:{_line(index)}: label {record['label']!r} is not safe, unsafe, 0 or 1")
        prompt = str(record["prompt"])
        hazard = str(record.get("hazard") or "").strip() or None
        group = str(record.get("group") or "").strip() or f"prompt:{_normalise(prompt)}"
        rows.append(
            LabelledExchange(
                prompt=prompt,
                response=str(record["response"]),
                hazard=hazard,
                unsafe=GENERIC_LABELS[label],
                source=str(record.get("source") or "").strip() or path.name,
                group=group,
            )
        )
    return rows


GPTFUZZ_COLUMNS = ("split", "question_index", "question", "response", "jailbroken")
DNA_COLUMNS = ("id", "model", "types_of_harm", "prompt", "response", "harmful")
DIASAFETY_COLUMNS = ("context", "response", "category", "label")
# Do-Not-Answer's `harmful` is broader than our rubric. We map on its `specific_harms` (the text
# before the colon): a harmful answer is unsafe for us when its specific harm is one the AILuminate
# taxonomy grades: uplift to crime or cyber-attack (ncr), threats (vcr), explicit or exploitative
# sexual content (sxc, cse), self-harm and unsafe health practices (ssh), harassment and racial
# or ethnic demeaning (hte), defamation (dfm), unqualified medical, legal or financial advice
# (spc), and leaking a person's private information (prv, every specific harm of that type).
# A prompt with any harmful answer of another specific harm (graphic violence, spam, insults
# without a protected characteristic, false news and rumours, an organisation's confidential
# details, answering as if the chatbot were a person, ...) is dropped whole: under our rubric most
# of those answers are safe, but we do not assert labels the annotators did not give, and dropping
# only the harmful answers would leave those prompts looking all-safe.
DNA_UNSAFE_SPECIFIC_HARMS = frozenset(
    {
        "Explicit Sexual Content",
        "Illegal Digital Activities",
        "Illegal Trade",
        "Illegitimate surveillance and censorship",
        "Sexual Exploitation and Pornography",
        "Threats and Intimidation",
        "Financial Advice",
        "Legal Advice",
        "Medical Advice",
        "Self-Harm",
        "Endorsement of Cyberbullying or Online Harassment",
        "Endorsement of Unsafe Health Practices",
        "Defamatory Content",
        "Cybersecurity Vulnerabilities",
        "Racial/Ethnic Discrimination",
    }
)
DNA_PRIVACY_TYPE = "Compromise privacy by leaking or inferring private information (person/individual)"


def dna_specific_harm(specific_harms: str) -> str:
    return specific_harms.split(":", 1)[0].strip()


def dna_maps_to_unsafe(types_of_harm: str, specific_harms: str) -> bool:
    """Whether a Do-Not-Answer answer labelled harmful is unsafe under our rubric."""
    return (
        types_of_harm.strip() == DNA_PRIVACY_TYPE
        or dna_specific_harm(specific_harms) in DNA_UNSAFE_SPECIFIC_HARMS
    )


def _binary(value: str, path: Path, index: int, column: str) -> bool:
    value = value.strip()
    if value not in ("0", "1"):
        raise UserError(f"{path}:{_line(index)}: {column} {value!r} is not 0 or 1")
    return value == "1"


def load_gptfuzz(path: Path) -> list[LabelledExchange]:
    """GPTFuzz's labelled answers: gpt-3.5-turbo under 77 jailbreak templates, grouped by question
    (the template text is not in the file; the bare question stands in for the prompt)."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, GPTFUZZ_COLUMNS, "a GPTFuzz label file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        rows.append(
            LabelledExchange(
                prompt=record["question"],
                response=record["response"],
                unsafe=_binary(record["jailbroken"], path, index, "jailbroken"),
                source="gptfuzz",
                group=f"gptfuzz:{record['question_index'].strip()}",
                model="gpt-3.5-turbo",
                upstream_split=record["split"].strip() or None,
            )
        )
    return rows


def load_do_not_answer(path: Path) -> tuple[list[LabelledExchange], int]:
    """(rows, number of rows dropped): Do-Not-Answer mapped onto our rubric (`dna_maps_to_unsafe`).

    Prompts are grouped by their normalised text (one prompt appears under two ids)."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, (*DNA_COLUMNS, "specific_harms"), "a Do-Not-Answer label file")
    records = frame.to_dict("records")
    dropped_groups = set()
    harmful = []
    for index, record in enumerate(records):
        flag = _binary(record["harmful"], path, index, "harmful")
        harmful.append(flag)
        if flag and not dna_maps_to_unsafe(record["types_of_harm"], record["specific_harms"]):
            dropped_groups.add(_normalise(record["prompt"]))
    rows = []
    for record, flag in zip(records, harmful, strict=True):
        group = _normalise(record["prompt"])
        if group in dropped_groups:
            continue
        rows.append(
            LabelledExchange(
                prompt=record["prompt"],
                response=record["response"],
                unsafe=flag,
                source="dna",
                group=f"dna:{group}",
                prompt_type=dna_specific_harm(record["specific_harms"]) or record["types_of_harm"].strip(),
                model=record["model"].strip(),
            )
        )
    return rows, len(records) - len(rows)


def load_diasafety(path: Path) -> list[LabelledExchange]:
    """DiaSafety's chatbot replies in social conversations (auxiliary: not used for training)."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, DIASAFETY_COLUMNS, "a DiaSafety label file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        label = record["label"].strip()
        if label not in ("Safe", "Unsafe"):
            raise UserError(f"{path}:{_line(index)}: label {label!r} is not Safe or Unsafe")
        rows.append(
            LabelledExchange(
                prompt=record["context"],
                response=record["response"],
                unsafe=label == "Unsafe",
                source="diasafety",
                group=f"diasafety:{_normalise(record['context'])}",
                prompt_type=record["category"].strip(),
                upstream_split=str(record.get("split") or "").strip() or None,
            )
        )
    return rows


def load_labels(path: Path) -> list[LabelledExchange]:
    """Any supported label source: an XSTest folder, an XSTest completion file, a GPTFuzz,
    Do-Not-Answer or DiaSafety file, or a generic CSV (told apart by their columns)."""
    path = Path(path)
    if path.is_dir():
        return load_xstest_folder(path)
    frame = _read_csv(path)
    columns = set(frame.columns)
    if {"completion", "final_label"} <= columns:
        return load_xstest(path)
    if set(GPTFUZZ_COLUMNS) <= columns:
        return load_gptfuzz(path)
    if set(DNA_COLUMNS) <= columns:
        return load_do_not_answer(path)[0]
    if set(DIASAFETY_COLUMNS) <= columns:
        return load_diasafety(path)
    return load_generic(path)


def split_by_prompt(
    rows: Sequence[LabelledExchange], held_out: float = 0.3, seed: int = 0
) -> tuple[list[LabelledExchange], list[LabelledExchange]]:
    """(train, held_out): whole prompt groups on one side, the same for the same rows and seed.

    Groups are shuffled within two strata, those with an unsafe row and those without, so that the
    rare unsafe class lands on both sides in proportion rather than by luck. The result depends on
    the set of groups, not on row order.
    """
    if not 0.0 < held_out < 1.0:
        raise ValueError("held_out must be strictly between 0 and 1")
    has_unsafe: dict[str, bool] = {}
    for row in rows:
        has_unsafe[row.group] = has_unsafe.get(row.group, False) or row.unsafe
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for stratum in (True, False):
        groups = sorted(g for g, u in has_unsafe.items() if u is stratum)
        order = rng.permutation(len(groups))
        count = int(round(held_out * len(groups)))
        held.update(groups[i] for i in order[:count])
    train = [row for row in rows if row.group not in held]
    test = [row for row in rows if row.group in held]
    return train, test
