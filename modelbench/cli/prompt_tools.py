"""`modelbench prompts`: render built-in prompt sets to files, and describe any set."""

from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from modelbench.cli.app import main
from modelbench.errors import UserError


@main.group()
def prompts() -> None:
    """Render built-in prompt sets to files, and describe any set."""


@prompts.command(name="render")
@click.option("--set", "set_name", required=True, help="Built-in prompt set name.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="FILE.csv or FILE.jsonl")
def prompts_render(set_name: str, out: Path) -> None:
    """Write a built-in set in the AILuminate CSV layout (or JSONL); it re-imports unchanged."""
    from modelbench.prompts import builtin_set_names, load_prompt_set, write_items

    if set_name not in builtin_set_names():
        raise UserError(f"unknown prompt set '{set_name}' (built in: {', '.join(builtin_set_names())})")
    prompt_set = load_prompt_set(set_name)
    write_items(prompt_set.items, out)
    click.echo(f"wrote {len(prompt_set.items)} items of {set_name} to {out}")


@prompts.command(name="stats")
@click.option("--prompt-set", "prompt_set", required=True, help="Built-in set name or a .csv/.jsonl file.")
@click.option("--skip-invalid", is_flag=True, help="Leave out invalid rows of a file (counted).")
def prompts_stats(prompt_set: str, skip_invalid: bool) -> None:
    """Counts per hazard and persona, subhazards, locales and prompt lengths."""
    from statistics import median

    from modelbench.hazards import load_taxonomy
    from modelbench.prompts import load_prompt_set

    loaded = load_prompt_set(prompt_set, skip_invalid=skip_invalid)
    items = loaded.items
    personas = sorted({i.persona for i in items})
    table = Table("hazard", "subhazards", *personas, "total", "median chars")
    for hazard in load_taxonomy().hazard_uids:
        group = [i for i in items if i.hazard == hazard]
        if not group:
            continue
        subs = Counter(i.subhazard for i in group if i.subhazard)
        by_persona = Counter(i.persona for i in group)
        table.add_row(
            hazard,
            ", ".join(f"{s} {n}" for s, n in sorted(subs.items())) or "-",
            *(str(by_persona[p]) for p in personas),
            str(len(group)),
            f"{median(len(i.text) for i in group):.0f}",
        )
    totals = Counter(i.persona for i in items)
    table.add_row(
        "all",
        "",
        *(str(totals[p]) for p in personas),
        str(len(items)),
        f"{median(len(i.text) for i in items):.0f}",
    )
    console = Console()
    console.print(loaded.description, soft_wrap=True, highlight=False)
    console.print(table)
    locales = Counter(i.locale for i in items)
    console.print("locales: " + ", ".join(f"{loc} {n}" for loc, n in sorted(locales.items())))
