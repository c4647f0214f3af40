"""Commands on stored runs: compare, report, leaderboard, merge, export."""

from pathlib import Path

import click

from modelbench.cli.app import main, make_console
from modelbench.errors import UserError


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
    from modelbench.reports import as_run_config, grading_of, grading_summary
    from modelbench.scoring import compare_paired, safe_by_item, with_correction

    if len(suts) != 2:
        raise UserError("compare needs exactly two --sut options")
    store, run_id = _open_run(run_dir, run)
    try:
        rows = store.run_rows(run_id)
        config = as_run_config((store.run_info(run_id) or {}).get("config"))
        grading = grading_of(config)
    finally:
        store.close()
    # Hazard items with a valid verdict; benign (over-refusal) items are never in a safety comparison.
    safe = {s: safe_by_item(rows, s) for s in suts}
    present = {row["sut_uid"] for row in rows}
    for sut in suts:
        if sut not in present:
            raise UserError(f"SUT '{sut}' is not in run {run_id} (has: {', '.join(sorted(present))})")
    result = with_correction(
        compare_paired(suts[0], safe[suts[0]], suts[1], safe[suts[1]]), config.error_rates
    )
    console = make_console()
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
    from modelbench.reports import write_run_report

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
    from modelbench.reports import write_leaderboard
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
    type=click.Choice(["items", "scores", "resilience"]),
    default="items",
    show_default=True,
    help="items: one row per item; scores: one row per SUT and hazard (and overall), raw and corrected; "
    "resilience: one row per SUT, attack and hazard (and overall): rate under attack, paired gap.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: RUN_DIR/RUN/WHAT.FORMAT")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def export(run: str, fmt: str, what: str, out: Path | None, run_dir: Path) -> None:
    """Rows of RUN (a run id or `latest`): per item (prompt, response, verdicts, scores) or per
    hazard (raw and corrected unsafe rates with intervals, grade, stability)."""
    from modelbench.reports import export_rows, item_rows, load_record, resilience_rows, score_rows

    store, run_id = _open_run(run_dir, run)
    try:
        if what == "items":
            rows = item_rows(store.run_rows(run_id))
        elif what == "scores":
            rows = score_rows(load_record(store, run_id))
        else:
            rows = resilience_rows(load_record(store, run_id))
            if not rows:
                raise UserError(f"run {run_id} had no attacks: nothing to export (run with --attacks)")
    finally:
        store.close()
    for row in rows:
        row["run_id"] = run_id
    path = export_rows(rows, out or run_dir / run_id / f"{what}.{fmt}", fmt)
    click.echo(f"wrote {len(rows)} rows to {path}")


@main.command()
@click.argument("run")
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
def rescore(run: str, run_dir: Path) -> None:
    """Rebuild the lost record of RUN (a run id or `latest`) from the store's per-item scores.

    Reports read a run's record and never re-score it. A run whose record is gone (no copy in the
    store, no RUN_DIR/RUN/record.json) is re-scored here once, against its own reference standard
    and grading rules; the record, marked as recomputed, is kept in the store's summary of the run.
    """
    from modelbench.rescore import rebuild_record

    store, run_id = _open_run(run_dir, run)
    try:
        record = rebuild_record(store, run_id)
        where = store.path
    finally:
        store.close()
    grades = "; ".join(f"{s.sut_uid} {s.overall.grade}" for s in record.scores) or "no SUT scored"
    click.echo(f"rebuilt the record of run {run_id} into the store {where}: {grades}")
    click.echo(f"its report: modelbench report {run_id} --run-dir {run_dir}")
