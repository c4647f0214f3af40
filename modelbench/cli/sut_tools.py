"""`modelbench compress`: save a compressed SUT as an ordinary checkpoint."""

from pathlib import Path

import click

from modelbench.cli.app import main, make_console
from modelbench.errors import UserError


@main.command()
@click.argument("spec")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the checkpoint.")
@click.option("--calibration-size", type=int, default=64, show_default=True)
@click.option("--calibration-seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda ... Default: cuda when present.")
def compress(spec: str, out: Path, calibration_size: int, calibration_seed: int, device: str | None) -> None:
    """Save a compressed model (e.g. smollm2-135m+wanda=0.5) as a normal transformers checkpoint."""
    import shutil

    from modelbench.suts import CompressedSUT, SUTOptions, make_sut

    sut = make_sut(
        spec, SUTOptions(calibration_size=calibration_size, calibration_seed=calibration_seed, device=device)
    )
    if not isinstance(sut, CompressedSUT):
        raise UserError(
            f"'{spec}' names no compression (use BASE+TRANSFORM=ARG, e.g. smollm2-135m+wanda=0.5)"
        )
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty")
    console = make_console()
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
