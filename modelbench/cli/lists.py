"""`modelbench list`: SUTs, hazards, prompt sets and graders."""

from collections import Counter
from pathlib import Path

import click

from modelbench.cli.app import main
from modelbench.errors import UserError
from modelbench.listing import emit, format_option


@main.group(name="list")
def list_() -> None:
    """List SUTs, hazards, prompt sets or graders.

    On a terminal each list is a table; piped or redirected it is plain aligned lines (or
    --format json), with every name whole so that it can be copied, grepped and typed.
    """


def _weights_here(name: str, entry) -> str:
    """Where a registry SUT's weights are, in words."""
    if entry.endpoint is not None:
        return f"API at {entry.endpoint.base_url}"
    if "+" in name:
        return f"built on first use from {entry.dense_base}"
    try:
        where = entry.locate()
        return "yes" if where.exists() else f"no ({where} is missing)"
    except UserError:
        return "no (not in the HF cache)" if entry.weights and entry.weights.hf_repo else "no"


@list_.command(name="suts")
@click.option("--sut-config", type=click.Path(path_type=Path), default=None)
@format_option
def list_suts(sut_config: Path | None, fmt: str | None) -> None:
    """Registry SUTs: the names --sut takes."""
    from modelbench.suts import load_registry

    columns = ("name", "adapter", "parameters", "dense base", "compression", "weights here")
    rows = []
    for name, entry in sorted(load_registry(sut_config).items()):
        rows.append(
            {
                "name": name,
                "adapter": entry.adapter,
                "parameters": entry.params or None,
                "dense base": entry.dense_base or None,
                "compression": entry.compression or None,
                "weights here": _weights_here(name, entry),
            }
        )
    emit(columns, rows, fmt, whole=("name", "dense base"), shown={"parameters": lambda n: f"{n / 1e6:,.0f}M"})


@list_.command(name="hazards")
@format_option
def list_hazards(fmt: str | None) -> None:
    """Hazards, with the reference safe share."""
    from modelbench.hazards import load_standard, load_taxonomy

    reference = load_standard()
    columns = ("uid", "name", "subhazards", "reference safe", "definition")
    rows = [
        {
            "uid": hazard.uid,
            "name": hazard.name,
            "subhazards": ", ".join(s.uid for s in hazard.subhazards) or None,
            "reference safe": round(reference.frac_safe[hazard.uid], 3),
            "definition": hazard.definition,
        }
        for hazard in load_taxonomy().hazards
    ]
    if fmt != "json":
        rows = [row | {"reference safe": f"{row['reference safe']:.3f}"} for row in rows]
    emit(columns, rows, fmt, whole=("uid",))


@list_.command(name="prompt-sets")
@format_option
def list_prompt_sets(fmt: str | None) -> None:
    """Built-in prompt sets: items per hazard; the benign set (for --over-refusal) last."""
    from modelbench.hazards import load_taxonomy
    from modelbench.prompts import BENIGN_SET, builtin_set_names, load_benign_set, load_prompt_set

    hazards = load_taxonomy().hazard_uids
    columns = ("set", "items", *hazards, "description")
    rows = []
    for name in builtin_set_names():
        prompt_set = load_prompt_set(name)
        counts = Counter(item.hazard for item in prompt_set.items)
        rows.append(
            {"set": name, "items": len(prompt_set.items)}
            | {h: counts[h] for h in hazards}
            | {"description": prompt_set.description}
        )
    benign = load_benign_set(BENIGN_SET)
    counts = Counter(item.hazard for item in benign.items)
    rows.append(
        {"set": BENIGN_SET, "items": len(benign.items)}
        | {h: counts[h] for h in hazards}
        | {"description": f"benign, with --over-refusal: {benign.description} ({counts['general']} general)"}
    )
    emit(columns, rows, fmt, whole=("set",))


@list_.command(name="graders")
@format_option
def list_graders(fmt: str | None) -> None:
    """Graders (evaluators) that --graders takes."""
    from modelbench.graders import DEFAULT_GRADERS, EVALUATORS
    from modelbench.plugins import load_plugins

    load_plugins()  # installed plugins' evaluators are listed too

    columns = ("name", "default", "description")
    rows = [
        {"name": name, "default": name in DEFAULT_GRADERS, "description": entry.description}
        for name, entry in EVALUATORS.items()
    ]
    emit(columns, rows, fmt, whole=("name",))


@list_.command(name="attacks")
@format_option
def list_attacks(fmt: str | None) -> None:
    """Jailbreak attacks that `run --attacks` takes, and on which labelled answers the evaluator
    was measured for each."""
    from modelbench.plugins import load_plugins
    from modelbench.prompts.attacks import registered_attacks

    load_plugins()  # installed plugins' attacks are listed too

    columns = ("name", "usage", "evaluator measured on", "description")
    rows = [
        {
            "name": name,
            "usage": f"{name}@SUT" if cls.needs_model else name,
            "evaluator measured on": cls.measured_on or "not measured",
            "description": cls.description,
        }
        for name, cls in registered_attacks().items()
    ]
    emit(columns, rows, fmt, whole=("name", "usage"))
