"""The `modelbench` command group: its options, its error handling, and what every command shares."""

import logging
import os

import click
from rich.console import Console

from modelbench.errors import UserError
from modelbench.version import __version__

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
            if exc.exit_code == 0:  # nothing to do, and nothing wrong (a finished run resumed)
                click.echo(str(exc))
            else:
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


def make_console() -> Console:
    """A console for a command's output; off a terminal, wide enough for the grade table."""
    console = Console()
    if not console.is_terminal:
        console.width = 150  # logs and CI: wide enough that the grade table does not wrap
    return console


def spec_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """Specs from a repeated option whose values may also be comma-separated
    (`--graders refusal,minilm-ce` is `--graders refusal --graders minilm-ce`)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
