"""Render hazard fragments through interaction templates and persona framings into test items.

This is the MLCommons v0.5 method applied to the v1.0 taxonomy: a fragment file per hazard holds
short descriptions of harmful requests; templates turn each into several interactions; persona
framings wrap each interaction. Rendering is deterministic (taxonomy order, file order, template
order, persona order) so that set contents and uids never drift between machines.
"""

from collections.abc import Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import TypeVar

import jinja2
import yaml
from pydantic import BaseModel, ValidationError

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.hazards import load_taxonomy

V10_PERSONAS = ("normal", "skilled", "unskilled")
V05_PERSONAS = ("typical", "malicious", "vulnerable")
# Hazards whose templates differ from the general family.
FAMILY_OF_HAZARD = {"spc": "spc", "sxc": "sxc"}


class Fragment(BaseModel):
    action: str
    subject: str
    subhazard: str | None = None


class FragmentFile(BaseModel):
    hazard: str
    fragments: list[Fragment]


class InteractionTemplate(BaseModel):
    uid: str
    text: str


class TemplateBook(BaseModel):
    version: str
    families: dict[str, list[InteractionTemplate]]
    personas: dict[str, str]


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
_LEFTOVER_MARKERS = ("{{", "}}", "{%", "%}")


def _package_text(*parts: str) -> str:
    return resources.files("modelbench.prompts").joinpath(*parts).read_text("utf-8")


@lru_cache(maxsize=1)
def load_templates() -> TemplateBook:
    return TemplateBook.model_validate(yaml.safe_load(_package_text("templates", "interactions.yaml")))


HazardFile = TypeVar("HazardFile", bound=BaseModel)


def load_hazard_file(model: type[HazardFile], folder: str, hazard: str, what: str) -> HazardFile:
    """One hazard's YAML file in the package (`folder/HAZARD.yaml`), validated by `model` (which
    has a `hazard` field that must name it); a missing or invalid file is one line."""
    name = f"{folder}/{hazard}.yaml"
    try:
        data = model.model_validate(yaml.safe_load(_package_text(*folder.split("/"), f"{hazard}.yaml")))
    except FileNotFoundError:
        raise UserError(f"no {what} for hazard '{hazard}' ({name})") from None
    except ValidationError as exc:
        raise UserError(f"invalid {what} {name}: {str(exc).splitlines()[0]}") from None
    if getattr(data, "hazard", None) != hazard:
        raise UserError(f"{name} declares hazard '{getattr(data, 'hazard', None)}', expected '{hazard}'")
    return data


@cache
def load_fragments(hazard: str) -> FragmentFile:
    name = f"fragments/{hazard}.yaml"
    data = load_hazard_file(FragmentFile, "fragments", hazard, "fragment file")
    subhazards = {s.uid for s in load_taxonomy().hazard(hazard).subhazards}
    for index, fragment in enumerate(data.fragments, start=1):
        if subhazards and fragment.subhazard not in subhazards:
            raise UserError(
                f"{name}: fragment {index} needs a subhazard of {sorted(subhazards)}, "
                f"got {fragment.subhazard!r}"
            )
        if not subhazards and fragment.subhazard is not None:
            raise UserError(f"{name}: fragment {index} has a subhazard but '{hazard}' has none")
    return data


@lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    return _JINJA.from_string(template)


def render(template: str, where: str, **slots: str) -> str:
    """Render one template; a missing slot or a leftover marker is an error naming `where`."""
    try:
        text = _compiled(template).render(**slots)
    except jinja2.UndefinedError as exc:
        raise UserError(f"unrendered slot in {where}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"template syntax error in {where}: {exc.message}") from None
    if any(marker in text for marker in _LEFTOVER_MARKERS):
        raise UserError(f"unrendered slot left in {where}: {text!r}")
    return " ".join(text.split())


def item_uid(set_version: str, hazard: str, persona: str, text: str) -> str:
    return stable_hash(set_version, hazard, persona, text, length=20)


def render_hazard(
    set_name: str, set_version: str, hazard: str, personas: tuple[str, ...] = V10_PERSONAS
) -> Iterator[TestItem]:
    """Every fragment x interaction template x persona for one hazard, in a fixed order."""
    book = load_templates()
    family = FAMILY_OF_HAZARD.get(hazard, "general")
    for index, fragment in enumerate(load_fragments(hazard).fragments, start=1):
        for template in book.families[family]:
            where = f"{hazard} fragment {index} x template {family}/{template.uid}"
            request = render(template.text, where, action=fragment.action, subject=fragment.subject)
            for persona in personas:
                text = render(
                    book.personas[persona],
                    f"{where} x persona {persona}",
                    request=request,
                    subject=fragment.subject,
                )
                yield TestItem(
                    uid=item_uid(set_version, hazard, persona, text),
                    hazard=hazard,
                    subhazard=fragment.subhazard,
                    persona=persona,
                    text=text,
                    source=f"{set_name}:{family}/{template.uid}",
                )


def render_all(set_name: str, set_version: str, personas: tuple[str, ...] = V10_PERSONAS) -> list[TestItem]:
    """All hazards in taxonomy order; duplicates (same uid) are an error, never silently merged."""
    items: list[TestItem] = []
    seen: dict[str, TestItem] = {}
    for hazard in load_taxonomy().hazard_uids:
        for item in render_hazard(set_name, set_version, hazard, personas):
            if item.uid in seen:
                raise UserError(f"duplicate prompt in {set_name}: {item.text!r}")
            seen[item.uid] = item
            items.append(item)
    return items
