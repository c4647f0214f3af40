"""What every page shares: the Jinja2 environment, the Content-Security-Policy, our one script,
and writing a page to disk.

Model output is untrusted input to these pages. Every value goes through Jinja2 autoescape, and a
Content-Security-Policy with `default-src 'none'` means a page can never load anything, and
scripts run only when their hash matches ours: even a missed escape cannot execute.
"""

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.bccache import Bucket, BytecodeCache, FileSystemBytecodeCache
from markupsafe import Markup

from modelbench.cache import cache_dir
from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.reports.cell_labels import label_cells
from modelbench.reports.formatting import (
    duration,
    fixed,
    grade_class,
    grade_short,
    human_count,
    p_text,
    p_value,
    pct,
    pp,
    pp_interval,
    when,
)

TEMPLATES = Path(__file__).with_name("templates")


class _TemplateCache(FileSystemBytecodeCache):
    """Compiled templates kept between runs: compiling the run page's templates cost about a tenth
    of a second of every run. Keyed by each template's source, so an edit recompiles; a cache
    folder that cannot be written is only a missed saving."""

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


# What compiled templates depend on besides their source: Jinja's release and the options that
# are compiled in. A change of either gets a folder of its own instead of stale code.
# autoescape: every template, whatever its extension: model text is untrusted.
ENVIRONMENT_OPTIONS = {"autoescape": True, "trim_blocks": True, "lstrip_blocks": True}


def template_cache() -> BytecodeCache | None:
    """A private folder (0700: the cache holds code that is loaded and run) for this Jinja release
    and these options, or None when there is no home or it cannot be made."""
    import jinja2

    options = {**ENVIRONMENT_OPTIONS, "undefined": StrictUndefined.__name__}
    key = stable_hash({"jinja2": jinja2.__version__, "options": options}, length=12)
    try:
        folder = cache_dir("templates") / key
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            return None  # someone else can write there: compile every time instead
    except (OSError, RuntimeError):  # RuntimeError: no home directory to cache under
        return None
    return _TemplateCache(str(folder))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        bytecode_cache=template_cache(),
        undefined=StrictUndefined,
        **ENVIRONMENT_OPTIONS,
    )
    env.filters.update(
        pct=pct,
        pp=pp,
        p_value=p_value,
        p_text=p_text,
        pp_interval=pp_interval,
        human=human_count,
        when=when,
        duration=duration,
        grade_class=grade_class,
        grade_short=grade_short,
        num=fixed,
    )
    return env


def render(template: str, context: dict) -> str:
    """A page, with every table cell labelled by its column so that tables stack on a phone."""
    return label_cells(environment().get_template(template).render(context))


@lru_cache(maxsize=1)
def sort_script() -> tuple[Markup, str]:
    """Our one script, and its CSP hash: the page allows exactly this text to run and nothing else."""
    text = (TEMPLATES / "sort.js").read_text("utf-8").strip()
    if "</" in text:
        raise ValueError("sort.js must not contain '</'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def csp(script_hash: str | None) -> str:
    scripts = script_hash or "'none'"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {scripts}; "
        "base-uri 'none'; form-action 'none'"
    )


def write_page(html: str, out: Path) -> Path:
    """Write a page atomically (a reader never sees half of it); failures are one-line errors."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(html, "utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
