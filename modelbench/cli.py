"""The `modelbench` command line."""

import logging
import os
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from modelbench import __version__
from modelbench.errors import UserError

# Quiet third-party progress bars and chatter before transformers is ever imported.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Group(click.Group):
    """Turn UserError into one line on stderr and exit code 2, everywhere."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: finished work is stored; run the same command again to resume",
                err=True,
            )
            ctx.exit(130)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="modelbench")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (model loading, failures).")
def main(verbose: bool) -> None:
    """modelbench: grade AI systems on the AILuminate hazard taxonomy."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.option(
    "--sut",
    "suts",
    multiple=True,
    help="SUT name or spec (hf:PATH); repeatable. Default: smollm2-135m.",
)
@click.option("--prompt-set", default=None, help="Built-in set name or a .csv/.jsonl file. Default: mb-demo.")
@click.option("--max-items", type=int, default=None, help="Seeded sample stratified by hazard and persona.")
@click.option("--skip-invalid", is_flag=True, help="Leave out invalid rows of a prompt file (counted).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--graders", "graders", multiple=True, help="Evaluator names; repeatable. Default: refusal.")
@click.option("--standards", default=None, help="Reference standard name or JSON file.")
@click.option("--sut-config", type=click.Path(path_type=Path), default=None, help="Extra SUT registry YAML.")
@click.option("--max-new-tokens", type=int, default=128, show_default=True)
@click.option("--batch-size", type=int, default=None, help="Local model batch size. Default: automatic.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda when present.")
@click.option(
    "--concurrency", type=int, default=32, show_default=True, help="API requests in flight per SUT."
)
@click.option(
    "--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="API request timeout (s)."
)
@click.option("--max-attempts", type=int, default=5, show_default=True, help="API attempts per item.")
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(path_type=Path),
    default=None,
    help="NAME=value file of API keys (chmod 600).",
)
def run(
    suts,
    prompt_set,
    max_items,
    skip_invalid,
    seed,
    run_dir,
    graders,
    standards,
    sut_config,
    max_new_tokens,
    batch_size,
    device,
    concurrency,
    timeout_s,
    max_attempts,
    secrets_file,
) -> None:
    """Run SUTs on a prompt set, grade every response, score and record."""
    from modelbench.progress import RichProgress
    from modelbench.reports import print_scores
    from modelbench.runner import RunRequest, execute, prepare
    from modelbench.suts import SUTOptions

    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
        raise UserError("--concurrency and --max-attempts must be at least 1, and --timeout positive")
    request = RunRequest(
        seed=seed,
        max_items=max_items,
        skip_invalid=skip_invalid,
        run_dir=run_dir,
        sut_config=sut_config,
        sut_options=SUTOptions(
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            device=device,
            concurrency=concurrency,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            secrets_file=secrets_file,
        ),
    )
    if suts:
        request.suts = list(suts)
    if prompt_set:
        request.prompt_set = prompt_set
    if graders:
        request.graders = list(graders)
    if standards:
        request.standards = standards
    prepared = prepare(request)
    console = Console()
    if not console.is_terminal:
        console.width = 110  # logs and CI: wide enough that hazard names do not wrap
    console.print(
        f"run [bold]{prepared.run_id}[/]: {len(prepared.items)} items from {prepared.prompt_set.name}"
        f" x {len(prepared.suts)} SUT(s), graders: {', '.join(e.uid for e in prepared.evaluators)}"
    )
    if prepared.prompt_set.skipped:
        console.print(f"[yellow]{prepared.prompt_set.description}[/]", soft_wrap=True)
    with RichProgress(console) as progress:
        result = execute(prepared, progress)
    counts = result.outcome
    reused_r = sum(s.responses_reused for s in counts.sut_stats.values())
    total_r = len(prepared.items) * len(prepared.suts)
    total_v = counts.verdicts_new + counts.verdicts_reused
    console.print(
        f"reused {reused_r}/{total_r} stored responses and {counts.verdicts_reused}/{total_v} stored verdicts"
    )
    errors = sum(s.response_errors for s in counts.sut_stats.values())
    if errors:
        console.print(f"[yellow]{errors} responses failed; they are retried by the next run[/]")
    print_scores(result.scores, console)
    console.print(f"record: {result.record_path}  ({result.wall_s:.1f}s)")


@main.group()
def prompts() -> None:
    """Render built-in prompt sets to files, and describe any set."""


@prompts.command(name="render")
@click.option("--set", "set_name", required=True, help="Built-in prompt set name.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="FILE.csv or FILE.jsonl")
def prompts_render(set_name: str, out: Path) -> None:
    """Write a built-in set in the AILuminate CSV layout (or JSONL); it re-imports unchanged."""
    from modelbench.prompts import builtin_set_names, load_prompt_set
    from modelbench.prompts.export import write_items

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


@main.group(name="list")
def list_() -> None:
    """List SUTs, hazards, prompt sets or graders."""


@list_.command(name="suts")
@click.option("--sut-config", type=click.Path(path_type=Path), default=None)
def list_suts(sut_config: Path | None) -> None:
    from modelbench.suts import load_registry

    table = Table("name", "adapter", "parameters", "dense base", "compression", "weights here")
    for name, entry in sorted(load_registry(sut_config).items()):
        if entry.endpoint is not None:
            here = f"API at {entry.endpoint.base_url}"
        else:
            try:
                where = str(entry.locate())
                here = "yes" if Path(where).exists() else f"no ({where})"
            except UserError as exc:
                here = f"no ({exc})"
        params = f"{entry.params / 1e6:,.0f}M" if entry.params else "-"
        table.add_row(name, entry.adapter, params, entry.dense_base or "-", entry.compression or "-", here)
    Console().print(table)


@list_.command(name="hazards")
def list_hazards() -> None:
    from modelbench.hazards import load_standard, load_taxonomy

    reference = load_standard()
    table = Table("uid", "name", "subhazards", "reference safe", "definition")
    for hazard in load_taxonomy().hazards:
        subs = ", ".join(s.uid for s in hazard.subhazards) or "-"
        table.add_row(
            hazard.uid,
            hazard.name,
            subs,
            f"{reference.frac_safe[hazard.uid]:.3f}",
            hazard.definition,
        )
    Console().print(table)


@list_.command(name="prompt-sets")
def list_prompt_sets() -> None:
    from modelbench.hazards import load_taxonomy
    from modelbench.prompts import builtin_set_names, load_prompt_set

    hazards = load_taxonomy().hazard_uids
    table = Table("set", "items", *hazards, "description")
    for name in builtin_set_names():
        prompt_set = load_prompt_set(name)
        counts = Counter(item.hazard for item in prompt_set.items)
        table.add_row(
            name,
            str(len(prompt_set.items)),
            *(str(counts[h]) for h in hazards),
            prompt_set.description,
        )
    Console().print(table)


@list_.command(name="graders")
def list_graders() -> None:
    from modelbench.graders import DEFAULT_GRADERS, EVALUATORS

    table = Table("name", "default", "description")
    for name, (description, _cls) in EVALUATORS.items():
        table.add_row(name, "yes" if name in DEFAULT_GRADERS else "", description)
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
