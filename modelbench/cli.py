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
from modelbench.listing import emit, format_option

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


_RUN_OPTIONS = [
    click.option(
        "--sut",
        "suts",
        multiple=True,
        help="SUT: a name, hf:PATH, openai:MODEL, openai-compat:MODEL@URL; repeatable. Default: smollm2-135m",
    ),
    click.option(
        "--prompt-set", default=None, help="Built-in set name or a .csv/.jsonl file. Default: mb-demo."
    ),
    click.option(
        "--max-items", type=int, default=None, help="Seeded sample stratified by hazard and persona."
    ),
    click.option("--skip-invalid", is_flag=True, help="Leave out invalid rows of a prompt file (counted)."),
    click.option(
        "--seed", type=int, default=0, show_default=True, help="Seed for sampling and grade stability."
    ),
    click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True),
    click.option(
        "--graders",
        "graders",
        multiple=True,
        help=(
            "Evaluator specs; repeatable. Default: minilm-ce. Others: refusal, minilm-clf, "
            "llm-judge@SUT, llama-guard@URL (asks the server which model it serves), "
            "llama-guard@MODEL@URL, llama-guard@/local/path."
        ),
    ),
    click.option(
        "--sut-config", type=click.Path(path_type=Path), default=None, help="Extra SUT registry YAML."
    ),
    click.option("--max-new-tokens", type=int, default=128, show_default=True),
    click.option("--batch-size", type=int, default=None, help="Local model batch size. Default: automatic."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda when present."),
    click.option(
        "--kv-cache",
        type=click.Choice(["auto", "dynamic", "static"]),
        default="auto",
        show_default=True,
        help="Local model KV cache; auto = static (compiled decoding) on a GPU, dynamic on a CPU.",
    ),
    click.option(
        "--concurrency", type=int, default=32, show_default=True, help="API requests in flight per SUT."
    ),
    click.option(
        "--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="API request timeout (s)."
    ),
    click.option("--max-attempts", type=int, default=5, show_default=True, help="API attempts per item."),
    click.option(
        "--grade-on",
        type=click.Choice(["corrected", "raw"]),
        default="corrected",
        show_default=True,
        help="Grade on the unsafe rate corrected for the evaluators' measured errors (when they were "
        "measured and the correction is identifiable), or on the raw rate.",
    ),
    click.option(
        "--min-items",
        type=int,
        default=10,
        show_default=True,
        help="Fewest valid items a hazard (and the overall score) needs for a grade; fewer: "
        "'insufficient data'.",
    ),
    click.option(
        "--no-preflight",
        "no_preflight",
        is_flag=True,
        help="Skip the one cheap request per API SUT and grader made before the run.",
    ),
    click.option(
        "--calibration-size", type=int, default=64, show_default=True, help="Prompts to compress with."
    ),
    click.option("--calibration-seed", type=int, default=0, show_default=True, help="Seed for compression."),
    click.option(
        "--secrets",
        "secrets_file",
        type=click.Path(path_type=Path),
        default=None,
        help="NAME=value file of API keys (chmod 600).",
    ),
]


def run_options(command):
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


def _request(options: dict, standards: str | None = None):
    """A RunRequest from the shared run options, each checked with a one-line error."""
    from modelbench.runner import RunRequest
    from modelbench.suts import SUTOptions

    if options["max_new_tokens"] < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {options['max_new_tokens']}")
    if options["batch_size"] is not None and options["batch_size"] < 1:
        raise UserError(f"--batch-size must be at least 1, got {options['batch_size']}")
    if options["concurrency"] < 1 or options["max_attempts"] < 1 or options["timeout_s"] <= 0:
        raise UserError("--concurrency and --max-attempts must be at least 1, and --timeout positive")
    request = RunRequest(
        seed=options["seed"],
        preflight=not options["no_preflight"],
        grade_on=options["grade_on"],
        min_items=options["min_items"],
        max_items=options["max_items"],
        skip_invalid=options["skip_invalid"],
        run_dir=options["run_dir"],
        sut_config=options["sut_config"],
        sut_options=SUTOptions(
            max_new_tokens=options["max_new_tokens"],
            batch_size=options["batch_size"],
            device=options["device"],
            kv_cache=None if options["kv_cache"] == "auto" else options["kv_cache"],
            concurrency=options["concurrency"],
            timeout_s=options["timeout_s"],
            max_attempts=options["max_attempts"],
            secrets_file=options["secrets_file"],
            calibration_size=options["calibration_size"],
            calibration_seed=options["calibration_seed"],
        ),
    )
    if options["suts"]:
        request.suts = list(options["suts"])
    if options["prompt_set"]:
        request.prompt_set = options["prompt_set"]
    if options["graders"]:
        request.graders = list(options["graders"])
    if standards:
        request.standards = standards
    return request


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = 150  # logs and CI: wide enough that the grade table does not wrap
    return console


def _execute(request, console: Console, run_id: str | None = None):
    """Prepare (all checks), run with progress, and print what was reused."""
    from modelbench.progress import RichProgress
    from modelbench.reports import print_language_notices
    from modelbench.runner import execute, prepare

    prepared = prepare(request, run_id)
    console.print(
        f"run [bold]{prepared.run_id}[/]: {len(prepared.items)} items from {prepared.prompt_set.name}"
        f" x {len(prepared.suts)} SUT(s), graders: {', '.join(e.uid for e in prepared.evaluators)}"
    )
    if prepared.prompt_set.skipped:
        console.print(f"[yellow]{prepared.prompt_set.description}[/]", soft_wrap=True)
    print_language_notices(prepared.language_notices, console)
    with RichProgress(console) as progress:
        result = execute(prepared, progress)
    counts = result.outcome
    reused_r = sum(s.responses_reused for s in counts.sut_stats.values())
    total_r = len(prepared.items) * len(prepared.suts)
    total_v = counts.verdicts_new + counts.verdicts_reused
    console.print(
        f"reused {reused_r}/{total_r} stored responses and {counts.verdicts_reused}/{total_v} stored verdicts"
    )
    return prepared, result


@main.command()
@run_options
@click.option(
    "--standards", default=None, help="Reference standard: a name (built in or calibrated) or a JSON file."
)
@click.option("--shard", default=None, help="i/N: run the i-th of N deterministic slices (then `merge`).")
@click.option(
    "--resume", "resume", default=None, help="RUN_ID: finish an interrupted run with its own settings."
)
def run(standards: str | None, shard: str | None, resume: str | None, **options) -> None:
    """Run SUTs on a prompt set, grade every response, score and record."""
    from modelbench.reports import print_errors, print_language_notices, print_scores
    from modelbench.runner import grading_rules, load_request

    console = _console()
    if resume:
        request, run_id = load_request(options["run_dir"], resume), resume
    else:
        request, run_id = _request(options, standards), None
        request.shard = shard
    prepared, result = _execute(request, console, run_id)
    print_scores(result.scores, console, prepared.ensemble.error_rates, prepared.standard.name)
    standard_rate = (prepared.standard.provenance or {}).get("rate")
    corrected = grading_rules(prepared.request, prepared.ensemble).corrects
    if standard_rate and (standard_rate == "raw") == corrected:
        basis = "corrected" if corrected else "raw"
        console.print(
            f"[yellow]standard '{prepared.standard.name}' was calibrated on {standard_rate} rates, and "
            f"this run grades on {basis} ones: use --grade-on to match, or calibrate again[/]",
            soft_wrap=True,
        )
    print_language_notices(prepared.language_notices, console)
    print_errors(result.outcome.errors, result.invalid_grades, console)
    console.print(f"record: {result.record_path}  ({result.wall_s:.1f}s)")
    if result.report_path:
        console.print(f"report: {result.report_path}")
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)


@main.command()
@run_options
@click.option("--name", default="calibrated", show_default=True, help="Name of the standard to write.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Default: RUN_DIR/standards/NAME.json"
)
def calibrate(name: str, out: Path | None, **options) -> None:
    """Run reference SUTs and write a standard: per hazard, their lowest frac safe."""
    from modelbench.calibrate import standard_from_run, write_standard
    from modelbench.reports import print_errors, print_language_notices

    if not options["suts"]:
        raise UserError("calibrate needs at least one reference --sut")
    console = _console()
    prepared, result = _execute(_request(options), console)
    standard = standard_from_run(name, prepared, result)
    path = write_standard(standard, out or options["run_dir"] / "standards" / f"{name}.json")
    table = Table("hazard", *[s.sut_uid for s in result.scores], "reference frac safe")
    per_sut = standard["provenance"]["per_sut_frac_safe"]
    for hazard, value in standard["frac_safe"].items():
        table.add_row(hazard, *(f"{per_sut[s.sut_uid][hazard]:.3f}" for s in result.scores), f"{value:.3f}")
    console.print(table)
    print_language_notices(prepared.language_notices, console)
    print_errors(result.outcome.errors, result.invalid_grades, console)
    console.print(f"standard '{name}' written to {path}; use it with: modelbench run --standards {name}")
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)


def _open_run(run_dir: Path, run: str):
    """The store under `run_dir` and the id of a finished run (`latest` for the newest)."""
    from modelbench.store import open_store

    store = open_store(run_dir)
    try:
        return store, store.finished_run(run)["run_id"]
    except UserError:
        store.close()
        raise


@main.command()
@click.argument("run")
@click.option(
    "--sut", "suts", multiple=True, required=True, help="Exactly two: --sut A --sut B (B compared to A)."
)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def compare(run: str, suts: tuple[str, ...], run_dir: Path) -> None:
    """Paired comparison of two SUTs on the same items of RUN (a run id or `latest`).

    Both SUTs come from one run, so the same graders judged them on the same items: comparable by
    construction. The output names that grading, so that a pasted result says what it compared.
    """
    from modelbench.reports.html import grading_of, grading_summary, run_error_rates
    from modelbench.scoring.paired import compare_paired, with_correction

    if len(suts) != 2:
        raise UserError("compare needs exactly two --sut options")
    store, run_id = _open_run(run_dir, run)
    try:
        rows = store.run_rows(run_id)
        config = (store.run_info(run_id) or {}).get("config") or {}
        grading = grading_of(config)
    finally:
        store.close()
    safe: dict[str, dict[str, bool]] = {s: {} for s in suts}
    for row in rows:
        if row["sut_uid"] in safe and row["is_safe"] is not None:
            safe[row["sut_uid"]][row["item_uid"]] = row["is_safe"]
    present = {row["sut_uid"] for row in rows}
    for sut in suts:
        if sut not in present:
            raise UserError(f"SUT '{sut}' is not in run {run_id} (has: {', '.join(sorted(present))})")
    result = with_correction(
        compare_paired(suts[0], safe[suts[0]], suts[1], safe[suts[1]]), run_error_rates(config)
    )
    console = _console()
    if result.n == 0:
        raise UserError("the two SUTs share no validly graded items")
    console.print(f"{suts[1]} vs {suts[0]} on {result.n} shared items of run {run_id}", soft_wrap=True)
    console.print(f"both {grading_summary(grading)}", soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"unsafe: {result.unsafe_a}/{result.n} -> {result.unsafe_b}/{result.n}; "
        f"change in unsafe rate {result.delta_unsafe_rate:+.1%} "
        f"(95% CI {result.ci_low:+.1%} to {result.ci_high:+.1%})",
        soft_wrap=True,
    )
    console.print(
        f"flips: {result.safe_to_unsafe} safe->unsafe, {result.unsafe_to_safe} unsafe->safe; "
        f"McNemar exact p = {result.mcnemar_p:.4g}",
        soft_wrap=True,
    )
    corrected = result.corrected
    if corrected is None:
        console.print("corrected change: not available (these evaluators' error rates were not measured)")
    elif not corrected.identifiable:
        console.print(f"corrected change: {corrected.note}", soft_wrap=True)
    else:
        console.print(
            f"corrected for the evaluators' measured error: change in true unsafe rate "
            f"{corrected.estimate:+.1%} (95% CI {corrected.ci_low:+.1%} to {corrected.ci_high:+.1%})",
            soft_wrap=True,
        )


@main.command()
@click.argument("run")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: RUN_DIR/RUN/report.html")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def report(run: str, out: Path | None, run_dir: Path) -> None:
    """A self-contained HTML report of RUN (a run id or `latest`)."""
    from modelbench.reports.html import write_run_report

    store, run_id = _open_run(run_dir, run)
    try:
        path = write_run_report(store, run_id, out or run_dir / run_id / "report.html")
    finally:
        store.close()
    click.echo(f"wrote {path}")


@main.command()
@click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: RUN_DIR/modelbench.sqlite",
)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Default: leaderboard.html beside the store"
)
def leaderboard(store_path: Path | None, run_dir: Path, out: Path | None) -> None:
    """Every SUT graded in the store (latest finished run each), on one HTML page."""
    from modelbench.reports.html import write_leaderboard
    from modelbench.store import STORE_NAME, Store

    path = store_path or run_dir / STORE_NAME
    if not path.is_file():
        raise UserError(f"no store at {path} (give --store or --run-dir)")
    store = Store(path)
    try:
        written = write_leaderboard(store, out or path.parent / "leaderboard.html")
    finally:
        store.close()
    click.echo(f"wrote {written}")


@main.command()
@click.argument("spec")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the checkpoint.")
@click.option("--calibration-size", type=int, default=64, show_default=True)
@click.option("--calibration-seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda ... Default: cuda when present.")
def compress(spec: str, out: Path, calibration_size: int, calibration_seed: int, device: str | None) -> None:
    """Save a compressed model (e.g. smollm2-135m+wanda=0.5) as a normal transformers checkpoint."""
    import shutil

    from modelbench.suts import SUTOptions, make_sut
    from modelbench.suts.compressed import CompressedSUT

    sut = make_sut(
        spec, SUTOptions(calibration_size=calibration_size, calibration_seed=calibration_seed, device=device)
    )
    if not isinstance(sut, CompressedSUT):
        raise UserError(
            f"'{spec}' names no compression (use BASE+TRANSFORM=ARG, e.g. smollm2-135m+wanda=0.5)"
        )
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty")
    console = _console()
    with console.status(f"compressing {spec} (calibration {calibration_size}, seed {calibration_seed})"):
        sut._ensure_loaded()
    try:
        shutil.copytree(sut.model_path, out, dirs_exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    meta = sut.metadata()["compression_metadata"] or {}
    nan = float("nan")
    console.print(
        f"saved {spec} to {out}: sparsity {meta.get('sparsity', 0):.3f}, "
        f"parameters {meta.get('params_before', 0):,} -> {meta.get('params_after', 0):,}, "
        f"perplexity {meta.get('dense_perplexity', nan):.2f} -> {meta.get('perplexity', nan):.2f}",
        soft_wrap=True,
    )
    console.print(
        f"load it with from_pretrained, or grade it with: modelbench run --sut hf:{out}", soft_wrap=True
    )


@main.command()
@click.argument("stores", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--into", type=click.Path(path_type=Path), required=True, help="The store to merge into.")
def merge(stores: tuple[Path, ...], into: Path) -> None:
    """Merge stores (e.g. from --shard runs) into one, without duplicates."""
    from modelbench.store import Store

    for source in stores:
        if not source.is_file():
            raise UserError(f"no store at {source}")
        if source.resolve() == into.resolve():
            raise UserError(f"{source} is the store being merged into")
    target = Store(into)
    try:
        for source in stores:
            added = target.merge_from(source)
            click.echo(f"{source}: " + ", ".join(f"+{n} {table}" for table, n in added.items()))
    finally:
        target.close()
    click.echo(
        f"merged {len(stores)} store(s) into {into}; run the unsharded command on it to score the whole set"
    )


@main.command(name="export")
@click.argument("run")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "parquet", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--what",
    type=click.Choice(["items", "scores"]),
    default="items",
    show_default=True,
    help="items: one row per item; scores: one row per SUT and hazard (and overall), raw and corrected.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: RUN_DIR/RUN/WHAT.FORMAT")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def export(run: str, fmt: str, what: str, out: Path | None, run_dir: Path) -> None:
    """Rows of RUN (a run id or `latest`): per item (prompt, response, verdicts, scores) or per
    hazard (raw and corrected unsafe rates with intervals, grade, stability)."""
    from modelbench.reports.export import export_rows, score_rows
    from modelbench.reports.html import load_record

    store, run_id = _open_run(run_dir, run)
    try:
        rows = store.run_rows(run_id) if what == "items" else score_rows(load_record(store, run_id))
    finally:
        store.close()
    for row in rows:
        row["run_id"] = run_id
    path = export_rows(rows, out or run_dir / run_id / f"{what}.{fmt}", fmt)
    click.echo(f"wrote {len(rows)} rows to {path}")


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


@main.group()
def graders() -> None:
    """Measure evaluators against human labels and calibrate the ensemble."""


_GRADER_OPTIONS = [
    click.option("--labels", type=click.Path(path_type=Path), required=True, help="XSTest dir or a CSV."),
    click.option("--graders", "specs", multiple=True, help="Evaluator specs. Default: the default set."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the prompt-level split."),
    click.option("--held-out", type=float, default=0.3, show_default=True, help="Share of prompts held out."),
]  # fmt: skip


def grader_options(command):
    for option in reversed(_GRADER_OPTIONS):
        command = option(command)
    return command


def _evaluators(specs: tuple[str, ...]):
    from modelbench.graders.registry import DEFAULT_GRADERS, make_evaluator

    return [make_evaluator(spec) for spec in dict.fromkeys(specs or DEFAULT_GRADERS)]


def _agreement_table(results) -> Table:
    table = Table(
        "evaluator",
        "n",
        "invalid",
        "accuracy",
        "precision",
        "recall",
        "F1",
        "false-safe",
        "false-unsafe",
        "kappa",
        "J",
        "entropy",
    )

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for r in results:
        table.add_row(
            r.name, str(r.n), f"{r.invalid_rate:.1%}", f(r.accuracy), f(r.precision), f(r.recall), f(r.f1),
            f(r.false_safe_rate), f(r.false_unsafe_rate), f(r.kappa), f(r.youden_j), f(r.mean_entropy),
        )  # fmt: skip
    return table


@graders.command(name="evaluate")
@grader_options
@click.option("--split", type=click.Choice(["heldout", "train", "all"]), default="heldout", show_default=True)
@click.option(
    "--reliability", type=click.Path(path_type=Path), default=None, help="Default: the shipped calibration."
)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the results here."
)
def graders_evaluate(labels, specs, seed, held_out, split, reliability, json_out) -> None:
    """Agreement of each member and of the ensemble with human labels."""
    import json

    from modelbench.graders.lab.evaluation import (
        evaluate,
        in_sample_members,
        labelled_rows,
        load_ensemble_config,
    )

    rows = labelled_rows(labels, split, seed, held_out)
    evaluators = _evaluators(specs)
    ensemble = load_ensemble_config(reliability, graders=[e.uid for e in evaluators])
    # Never report a trained member on its own training rows: those are scored out of fold.
    in_sample = in_sample_members(evaluators, labels, split, seed, held_out)
    results = evaluate(evaluators, rows, ensemble, out_of_fold=in_sample, seed=seed)
    console = _console()
    console.print(
        f"{len(rows)} labelled rows ({split} split, seed {seed}), {sum(r.unsafe for r in rows)} unsafe"
    )
    for uid in sorted(in_sample):
        console.print(f"{uid}: trained on some of these rows, so scored out of fold (its recipe refitted)")
    console.print(_agreement_table(results))
    if json_out:
        payload = {
            "labels": str(labels), "split": split, "seed": seed, "held_out": held_out,
            "reliability": ensemble.reliability, "results": [r.model_dump() for r in results],
            "scored_out_of_fold": sorted(in_sample),
        }  # fmt: skip
        json_out.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
        console.print(f"results written to {json_out}")


@graders.command(name="calibrate")
@grader_options
@click.option("--split", type=click.Choice(["train", "all"]), default="train", show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Default: the shipped reliability file."
)
def graders_calibrate(labels, specs, seed, held_out, split, out) -> None:
    """Fit each member's reliability (Youden's J, floored at 0) and store it with provenance."""
    from modelbench.graders.lab.evaluation import (
        calibrate,
        default_reliability_path,
        in_sample_members,
        labelled_rows,
        write_reliability,
    )

    rows = labelled_rows(labels, split, seed, held_out)
    evaluators = _evaluators(specs)
    in_sample = in_sample_members(evaluators, labels, split, seed, held_out)
    for evaluator in evaluators:
        touches = getattr(evaluator, "touches_test_rows", None)
        if callable(touches) and touches(labels, split, seed, held_out):
            raise UserError(
                f"{labels} ({split} split) holds rows kept for testing {evaluator.uid}; calibrate on other "
                "labels, or on XSTest with --split train --seed 0 --held-out 0.3"
            )
    provenance = {"labels": str(labels), "split": split, "seed": seed, "held_out": held_out}
    calibration = calibrate(evaluators, rows, provenance, trained=in_sample)
    console = _console()
    rates_note = _error_rates_on_held_out(evaluators, calibration, labels, split, seed, held_out)
    path = write_reliability(calibration, out or default_reliability_path())
    table = Table("evaluator", "Youden's J", "reliability r")
    for uid, r in calibration["reliability"].items():
        j = calibration["provenance"]["members"][uid]["youden_j"]
        table.add_row(uid, "-" if j is None else f"{j:.3f}", f"{r:.3f}")
    console.print(table)
    console.print(
        f"ensemble threshold {calibration['threshold']}: chosen on these labels (F1 for unsafe), used when "
        "a run grades with exactly these evaluators"
    )
    console.print(rates_note, soft_wrap=True, highlight=False)
    console.print(f"reliability written to {path}")


def _error_rates_on_held_out(
    evaluators, calibration: dict, labels: Path, split: str, seed: int, held_out: float
):
    """Measure the calibrated ensemble's sensitivity and specificity on the held-out rows of the
    same labels (never the rows it was fitted on) and put them in `calibration`; returns a line
    saying what was done, or why not."""
    from modelbench.graders.lab.evaluation import in_sample_members, labelled_rows, measure_error_rates
    from modelbench.scoring.ensemble import EnsembleConfig

    if split == "all":
        return "no error rates written: --split all leaves no held-out rows to measure them on"
    trained = in_sample_members(evaluators, labels, "heldout", seed, held_out)
    if trained:
        return f"no error rates written: {', '.join(sorted(trained))} trained on the held-out rows"
    held = labelled_rows(labels, "heldout", seed, held_out)
    config = EnsembleConfig(reliability=calibration["reliability"], threshold=calibration["threshold"])
    measured_on = f"{len(held)} held-out rows of {labels} (seed {seed}, held-out share {held_out})"
    rates = measure_error_rates(evaluators, held, config, measured_on)
    calibration["error_rates"] = rates.model_dump()
    return f"error rates on {measured_on}: {rates.summary()}; runs with these graders correct by them"


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
                "parameters": f"{entry.params / 1e6:,.0f}M" if entry.params else None,
                "dense base": entry.dense_base or None,
                "compression": entry.compression or None,
                "weights here": _weights_here(name, entry),
            }
        )
    emit(columns, rows, fmt, whole=("name", "dense base"))


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
    """Built-in prompt sets: items per hazard."""
    from modelbench.hazards import load_taxonomy
    from modelbench.prompts import builtin_set_names, load_prompt_set

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
    emit(columns, rows, fmt, whole=("set",))


@list_.command(name="graders")
@format_option
def list_graders(fmt: str | None) -> None:
    """Graders (evaluators) that --graders takes."""
    from modelbench.graders import DEFAULT_GRADERS, EVALUATORS

    columns = ("name", "default", "description")
    rows = [
        {"name": name, "default": name in DEFAULT_GRADERS, "description": description}
        for name, description in EVALUATORS.items()
    ]
    emit(columns, rows, fmt, whole=("name",))


if __name__ == "__main__":
    sys.exit(main())
