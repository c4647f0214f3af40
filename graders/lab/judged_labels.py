"""Answers labelled by model judges rather than people: JailbreakBench's attack artifacts and the
past-tense reformulation attacks (Andriushchenko & Flammarion). Both hold answers of many chat
models (Vicuna, Llama 2 and 3, GPT-3.5/4/4o, o1, Claude 3.5 Sonnet, Gemma 2, Phi-3, ...) to the same
100 JailbreakBench behaviours.

How the labels are read (benchmarks/evaluator_protocol.md, "Judge-labelled sources"):

- The prompt is the clean request (`goal`), as the judges saw it, not the attack prompt: what the
  evaluator must decide is whether the answer hands over what the request asked for.
- Each row has two judges. JailbreakBench: its Llama-3-70B judge (`jailbroken`, the label
  JailbreakBench publishes) and Llama Guard 1 (empty for DSN, whose rows keep the first judge
  alone). Past tense: GPT-4 and Llama-3-70B. Where they agree the row is a plain label; where they
  disagree it is `ambiguous`: trained on with target 0.5, never used to calibrate or to measure.
- The group is the behaviour number (`index` = `i_request`), shared by both files, so that a split
  keeps a behaviour's answers from both sets on one side (a few goal texts are worded differently
  between the two files; the number is the same behaviour).
"""

from pathlib import Path

from modelbench.graders.lab.labels import LabelledExchange, _binary, _read_csv, _require

JBB_COLUMNS = ("method", "model", "index", "goal", "response", "jailbroken", "jailbroken_llama_guard1")
PAST_TENSE_COLUMNS = (
    "attack",
    "model",
    "i_request",
    "goal",
    "response",
    "jailbroken_gpt4",
    "jailbroken_llama3_70b",
)


def behaviour_group(number: str) -> str:
    """The group of a JailbreakBench behaviour, the same in both judge-labelled files."""
    return f"jbb-behaviour:{int(number.strip())}"


def _judged(first: bool, second: bool | None) -> tuple[bool, bool, float | None]:
    """(unsafe, ambiguous, soft target) from two judges' calls (the second may be missing)."""
    if second is None or second == first:
        return first, False, None
    return first, True, 0.5


def _row(
    record: dict[str, str], source: str, behaviour: str, method: str, first: bool, second: bool | None
) -> LabelledExchange:
    """One judged answer: the clean request as prompt, the behaviour number as group."""
    unsafe, ambiguous, target = _judged(first, second)
    return LabelledExchange(
        prompt=record["goal"],
        response=record["response"],
        unsafe=unsafe,
        ambiguous=ambiguous,
        target=target,
        source=source,
        group=behaviour_group(record[behaviour]),
        prompt_type=record[method].strip(),
        model=record["model"].strip(),
    )


def load_jbb_artifacts(path: Path) -> list[LabelledExchange]:
    """JailbreakBench's attack artifacts: four chat models under PAIR, GCG, JBC, random search, DSN."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, JBB_COLUMNS, "a JailbreakBench artifacts file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        first = _binary(record["jailbroken"], path, index, "jailbroken")
        raw_second = record["jailbroken_llama_guard1"].strip()
        # Llama Guard's column is read as text: "1.0"/"0.0", or empty where it did not judge.
        second = (
            None
            if raw_second == ""
            else _binary(raw_second.split(".")[0], path, index, "jailbroken_llama_guard1")
        )
        rows.append(_row(record, "jbb", "index", "method", first, second))
    return rows


def load_past_tense(path: Path) -> list[LabelledExchange]:
    """Past- and future-tense reformulations: eleven chat models, judged by GPT-4 and Llama-3-70B."""
    path = Path(path)
    frame = _read_csv(path)
    _require(frame, path, PAST_TENSE_COLUMNS, "a past-tense attack file")
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        gpt4 = _binary(record["jailbroken_gpt4"], path, index, "jailbroken_gpt4")
        llama = _binary(record["jailbroken_llama3_70b"], path, index, "jailbroken_llama3_70b")
        rows.append(_row(record, "pasttense", "i_request", "attack", llama, gpt4))
    return rows
