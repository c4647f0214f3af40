"""`modelbench run` and `modelbench calibrate`: the options a run takes, and running it."""

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from modelbench.cli.app import main, make_console, spec_list
from modelbench.errors import UserError

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
        "--max-items",
        type=int,
        default=None,
        help="Seeded sample stratified by hazard and persona (benign prompts sampled in proportion).",
    ),
    click.option(
        "--over-refusal",
        "over_refusal",
        is_flag=False,
        flag_value="mb-benign",
        default=None,
        metavar="[SET]",
        help="Also run benign prompts (default mb-benign: XSTest's safe prompts and per-hazard benign "
        "twins; or a .csv/.jsonl file) and report over-refusal and useful answers beside the grade.",
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
            "Evaluator specs; repeatable or comma-separated. Default: minilm-ce. Others: refusal, "
            "minilm-clf, llm-judge@SUT, llama-guard@URL (asks the server which model it serves), "
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
        "--dtype",
        type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
        default="auto",
        show_default=True,
        help="Local model dtype; auto = bfloat16 on a GPU or a CPU with native bf16, else float32. "
        "Pin it to get the same answers on every machine (and on every Ray node).",
    ),
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
        "--reliability",
        type=click.Path(path_type=Path),
        default=None,
        help="Your calibration (modelbench graders calibrate --out FILE) instead of the shipped one; "
        "the record keeps its path and hash.",
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
        over_refusal=options["over_refusal"],
        reliability=options["reliability"],
        skip_invalid=options["skip_invalid"],
        run_dir=options["run_dir"],
        sut_config=options["sut_config"],
        sut_options=SUTOptions(
            max_new_tokens=options["max_new_tokens"],
            batch_size=options["batch_size"],
            device=options["device"],
            kv_cache=None if options["kv_cache"] == "auto" else options["kv_cache"],
            dtype=None if options["dtype"] == "auto" else options["dtype"],
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
        request.graders = spec_list(options["graders"])
    if standards:
        request.standards = standards
    return request


def check_local_device(device: str | None) -> None:
    """`--device cuda[:N]` where this process runs local models: one line and exit 2 before any
    model loads, not a failed item per prompt. (On a Ray cluster the workers' devices count.)"""
    if not device or not device.startswith("cuda"):
        return
    import torch

    index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
    if not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"CUDA {torch.version.cuda}, but no GPU is visible"
        )
        raise UserError(f"--device {device}: torch {torch.__version__} here is {build}; use --device cpu")
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _execute(request, console: Console, run_id: str | None = None, executor=None):
    """Prepare (all checks), run with progress, and print what was reused. `executor`: None for
    the engine in this process, or a connected `RayExecutor`."""
    from modelbench.progress import RichProgress
    from modelbench.reports import print_language_notices
    from modelbench.runner import execute, prepare

    prepared = prepare(request, run_id)  # every check first: bad input never waits for a cluster
    where = ""
    if executor is not None:
        executor.connect()
        adjusted = executor.adjust(request)
        if adjusted is not request:  # a cluster with GPUs: local models on cuda, and their keys with it
            prepared = prepare(adjusted, prepared.run_id)
        resources = ", ".join(f"{k} {v:g}" for k, v in executor.resources.items() if k in ("CPU", "GPU"))
        where = f" on Ray ({resources})"
    benign = len(prepared.benign_uids)
    with_benign = f" + {benign} benign from {prepared.benign_set.name}" if prepared.benign_set else ""
    attacked = len(prepared.attacked_uids)
    with_attacks = (
        f" + {attacked} attacked ({', '.join(a.spec.text for a in prepared.attacks)})"
        if prepared.attacks
        else ""
    )
    console.print(
        f"run [bold]{prepared.run_id}[/]: {len(prepared.baseline_uids)} items from "
        f"{prepared.prompt_set.name}"
        f"{with_benign}{with_attacks}"
        f" x {len(prepared.suts)} SUT(s), graders: {', '.join(e.uid for e in prepared.evaluators)}{where}"
    )
    if prepared.prompt_set.skipped:
        console.print(f"[yellow]{prepared.prompt_set.description}[/]", soft_wrap=True)
    print_language_notices(prepared.language_notices, console)
    with RichProgress(console) as progress:
        result = execute(prepared, progress, executor)
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
@click.option(
    "--shard",
    default=None,
    help="i/N: run the i-th of N deterministic slices, then `merge` the stores: for job arrays "
    "(Slurm --array, Kubernetes Indexed Jobs) where there is no Ray cluster.",
)
@click.option(
    "--resume", "resume", default=None, help="RUN_ID: finish an interrupted run with its own settings."
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: the asyncio engine in this process. ray: units of work on a Ray cluster's workers "
    "(pip install 'modelbench[ray]'); this process still writes the one store.",
)
@click.option(
    "--ray-address",
    default=None,
    help="With --executor ray: auto, HOST:PORT or ray://HOST:PORT. Default: RAY_ADDRESS, else a "
    "new local cluster on 127.0.0.1.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="With --executor ray: workers (actors) per SUT. Default: the cluster's slots (GPUs for "
    "local models when it has GPUs, else CPUs) shared among the SUTs.",
)
@click.option(
    "--placement-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="With --executor ray: seconds to wait for Ray to place a worker before stopping with why.",
)
@click.option(
    "--attacks",
    "attacks",
    multiple=True,
    help="Jailbreak attacks, comma-separated or repeated (modelbench list attacks): each hazard item is "
    "also asked under each, and the report shows the resilience gap. E.g. template,prefix-injection,base64.",
)
@click.option(
    "--unit-size",
    type=int,
    default=256,
    show_default=True,
    help="With --executor ray: items per unit of work (length-sorted chunks of one SUT's items).",
)
def run(
    standards: str | None,
    shard: str | None,
    resume: str | None,
    executor: str,
    ray_address: str | None,
    workers: int | None,
    unit_size: int,
    attacks: tuple[str, ...],
    placement_timeout: float,
    **options,
) -> None:
    """Run SUTs on a prompt set, grade every response, score and record."""
    from modelbench.reports import (
        print_errors,
        print_language_notices,
        print_quality,
        print_resilience,
        print_scores,
    )
    from modelbench.runner import grading_rules, load_request

    console = make_console()
    if resume:
        context = click.get_current_context()
        given = [
            f"--{name.replace('_', '-')}"
            for name in [*options, "standards", "shard", "attacks"]
            if name != "run_dir"
            and context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise UserError(
                f"--resume finishes a run with its own settings: drop {', '.join(given)} "
                "(start a new run to change them)"
            )
        request, run_id = load_request(options["run_dir"], resume), resume
    else:
        request, run_id = _request(options, standards), None
        request.shard = shard
        request.attacks = spec_list(attacks)
    if executor == "local":
        check_local_device(request.sut_options.device)
    ray = None
    if executor == "ray":
        from modelbench.executors import RayExecutor

        ray = RayExecutor(ray_address, workers, unit_size, placement_timeout_s=placement_timeout)
    elif ray_address or workers is not None:
        raise UserError("--ray-address and --workers go with --executor ray")
    try:
        prepared, result = _execute(request, console, run_id, ray)
    finally:
        if ray is not None:
            ray.close()
    print_scores(
        result.scores, console, prepared.ensemble.error_rates, prepared.standard.name, result.quality
    )
    print_quality(result.quality, console)
    print_resilience(result.resilience, console)
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
    console = make_console()
    check_local_device(options["device"])
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
    # A standard under RUN_DIR/standards is found by name with the same --run-dir; elsewhere, by path.
    found_by_name = out is None
    use = f"--standards {name} --run-dir {options['run_dir']}" if found_by_name else f"--standards {path}"
    console.print(f"standard '{name}' written to {path}; use it with: modelbench run {use}")
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)
