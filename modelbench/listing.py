"""How `modelbench list ...` prints its rows: a table for people, plain lines or JSON for pipes.

Names in these lists (SUTs, prompt sets, graders, hazards) are what a user types next, so they
must come out whole and copyable whatever the terminal width. A rich table squeezed into 80
columns cuts them (`llama-2-1…`), and `| cat`, `| grep` or a CI log is exactly where that width
applies. So:

- `plain` (the default when stdout is not a terminal): a header line and one line per row, columns
  aligned and separated by at least two spaces, like `column -t`; never truncated or wrapped, so
  `grep`, `cut` and `awk` see every name whole on its own line.
- `json`: one array of objects keyed by column name, for programs.
- `table` (the default on a terminal): the rich table, with the name columns as wide as their
  longest value; when even that does not fit, the table is drawn wider than the terminal (which
  wraps it) rather than cut.
"""

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from modelbench.errors import UserError

FORMATS = ("table", "plain", "json")
Row = dict[str, Any]
_SPACE = re.compile(r"\s+")


class FormatChoice(click.Choice):
    """`--format table|plain|json`, whose bad values are one `error:` line (exit 2) like every other
    input error of the CLI, rather than click's usage block."""

    def __init__(self) -> None:
        super().__init__(FORMATS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise UserError(f"unknown --format '{value}' (choose {', '.join(FORMATS)})") from None


def format_option(command):
    """The `--format` option shared by every list command."""
    return click.option(
        "--format",
        "fmt",
        type=FormatChoice(),
        default=None,
        help="table, plain or json. Default: table on a terminal, plain otherwise (pipes, files).",
    )(command)


def default_format(stream: Any = None) -> str:
    """`table` when `stream` (stdout by default) is a terminal, `plain` otherwise."""
    stream = sys.stdout if stream is None else stream
    try:
        return "table" if stream.isatty() else "plain"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "plain"


def cell_text(value: Any) -> str:
    """One line of text for a cell: empty and missing values show as `-`, whitespace runs (line
    breaks included) as one space, so that a row stays one line and `  ` stays a separator."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = _SPACE.sub(" ", str(value)).strip()
    return text or "-"


def render_plain(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """A header and one line per row, each column padded to its widest cell (the last one is not
    padded), columns two spaces apart. Nothing is cut, whatever the width."""
    header = [cell_text(c) for c in columns]
    body = [[cell_text(row.get(c)) for c in columns] for row in rows]
    widths = [max(cell_len(line[i]) for line in [header, *body]) for i in range(len(columns))]
    lines = []
    for line in [header, *body]:
        padded = [text + " " * (widths[i] - cell_len(text)) for i, text in enumerate(line[:-1])]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def render_json(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """A JSON array of objects keyed by column name, in column order; values keep their types."""
    return json.dumps([{c: row.get(c) for c in columns} for row in rows], indent=2, ensure_ascii=False) + "\n"


def build_table(columns: Sequence[str], rows: Sequence[Row], whole: Sequence[str] = ()) -> Table:
    """The rich table; columns named in `whole` are never wrapped or cut: they are at least as wide
    as their longest value."""
    table = Table(*columns)
    for column in table.columns:
        name = str(column.header)
        if name in whole:
            column.no_wrap = True
            column.overflow = "fold"
            column.min_width = max([cell_len(name), *(cell_len(cell_text(r.get(name))) for r in rows)])
    for row in rows:
        table.add_row(*(cell_text(row.get(c)) for c in columns))
    return table


def print_table(table: Table, console: Console | None = None) -> None:
    """Print `table`, drawing it wider than the console when its whole columns need the room."""
    console = console or Console()
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    if needed > console.width:
        console.width = needed
    console.print(table)


def emit(
    columns: Sequence[str],
    rows: Sequence[Row],
    fmt: str | None = None,
    whole: Sequence[str] = (),
    console: Console | None = None,
    shown: Mapping[str, Callable[[Any], str]] | None = None,
) -> None:
    """Print `rows` (dicts keyed by `columns`) as `fmt`; `whole` names the columns a table must not
    cut (names the user types). `fmt` None picks by whether stdout is a terminal. `shown` formats
    a column's values for people (table and plain); JSON keeps the values as they are, so a
    program reads 134515008, not "135M"."""
    fmt = fmt or default_format()
    if fmt == "json":
        click.echo(render_json(columns, rows), nl=False)
        return
    if shown:
        rows = [{k: (shown[k](v) if k in shown and v is not None else v) for k, v in r.items()} for r in rows]
    if fmt == "plain":
        click.echo(render_plain(columns, rows), nl=False)
    elif fmt == "table":
        print_table(build_table(columns, rows, whole), console)
    else:
        raise UserError(f"unknown --format '{fmt}' (choose {', '.join(FORMATS)})")
