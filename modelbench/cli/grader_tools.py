"""`modelbench graders`: measure evaluators against human labels and calibrate the ensemble.

The only commands that load the evaluator lab (`modelbench.graders.lab`), inside the commands.
"""

from pathlib import Path

import click
from rich.table import Table

from modelbench.cli.app import main, make_console, spec_list
from modelbench.errors import UserError


@main.group()
def graders() -> None:
    """Measure evaluators against human labels and calibrate the ensemble."""


_GRADER_OPTIONS = [
    click.option("--labels", type=click.Path(path_type=Path), required=True, help="XSTest dir or a CSV."),
    click.option("--graders", "specs", multiple=True, help="Evaluator specs; repeatable or comma-separated."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the prompt-level split."),
    click.option("--held-out", type=float, default=0.3, show_default=True, help="Share of prompts held out."),
]  # fmt: skip


def grader_options(command):
    for option in reversed(_GRADER_OPTIONS):
        command = option(command)
    return command


def _evaluators(specs: tuple[str, ...]):
    from modelbench.graders import DEFAULT_GRADERS, make_evaluator

    return [make_evaluator(spec) for spec in dict.fromkeys(spec_list(specs) or DEFAULT_GRADERS)]


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

    from modelbench.graders.lab import evaluate, in_sample_members, labelled_rows
    from modelbench.scoring import load_ensemble_config

    rows = labelled_rows(labels, split, seed, held_out)
    evaluators = _evaluators(specs)
    ensemble = load_ensemble_config(reliability, graders=[e.uid for e in evaluators])
    # Never report a trained member on its own training rows: those are scored out of fold.
    in_sample = in_sample_members(evaluators, labels, split, seed, held_out)
    results = evaluate(evaluators, rows, ensemble, out_of_fold=in_sample, seed=seed)
    console = make_console()
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
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write your calibration. Default: RUN_DIR/reliability/calibrated.json (never the "
    "shipped file); use it with: modelbench run --reliability FILE",
)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Write error rates even when the held-out labels have fewer than 50 answers of a class.",
)
def graders_calibrate(labels, specs, seed, held_out, split, out, run_dir, force) -> None:
    """Fit each member's reliability (Youden's J, floored at 0) and store it with provenance,
    beside the shipped calibration, never over it."""
    from modelbench.graders.lab import calibrate, in_sample_members, labelled_rows
    from modelbench.scoring import default_reliability_path, write_reliability

    out = out or run_dir / "reliability" / "calibrated.json"
    if out.resolve() == default_reliability_path().resolve():
        raise UserError(
            f"{out} is the shipped calibration: write yours elsewhere (--out FILE) and run with "
            "--reliability FILE"
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
    console = make_console()
    rates_note = _error_rates_on_held_out(evaluators, calibration, labels, split, seed, held_out, force)
    path = write_reliability(calibration, out)
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
    console.print(f"reliability written to {path}; use it with: modelbench run --reliability {path}")


# Fewer held-out answers of a class than this, and the error rate measured on them is too wide to
# correct by without saying so (--force writes it anyway).
MIN_PER_CLASS = 50


def _error_rates_on_held_out(
    evaluators, calibration: dict, labels: Path, split: str, seed: int, held_out: float, force: bool = False
):
    """Measure the calibrated ensemble's sensitivity and specificity on the held-out rows of the
    same labels (never the rows it was fitted on) and put them in `calibration`; returns a line
    saying what was done, or why not."""
    from modelbench.graders.lab import in_sample_members, labelled_rows, measure_error_rates
    from modelbench.scoring import EnsembleConfig

    if split == "all":
        return "no error rates written: --split all leaves no held-out rows to measure them on"
    trained = in_sample_members(evaluators, labels, "heldout", seed, held_out)
    if trained:
        return f"no error rates written: {', '.join(sorted(trained))} trained on the held-out rows"
    held = labelled_rows(labels, "heldout", seed, held_out)
    n_unsafe = sum(r.unsafe for r in held)
    smallest = min(n_unsafe, len(held) - n_unsafe)
    if smallest < MIN_PER_CLASS and not force:
        from modelbench.scoring import clopper_pearson

        low, high = clopper_pearson(smallest // 2, smallest) or (0.0, 1.0)
        raise UserError(
            f"the held-out labels have {n_unsafe} unsafe and {len(held) - n_unsafe} safe answers: with "
            f"{smallest} of a class, an error rate near 50% is only known to within "
            f"[{low:.2f}, {high:.2f}] (95%), and every corrected rate would carry that; label more "
            f"(at least {MIN_PER_CLASS} of each), or pass --force to write them anyway"
        )
    config = EnsembleConfig(reliability=calibration["reliability"], threshold=calibration["threshold"])
    measured_on = f"{len(held)} held-out rows of {labels} (seed {seed}, held-out share {held_out})"
    rates = measure_error_rates(evaluators, held, config, measured_on)
    calibration["error_rates"] = rates.model_dump()
    return f"error rates on {measured_on}: {rates.summary()}; runs with these graders correct by them"
