"""`template`: the GPTFuzz jailbreak templates (role-play, "DAN", developer mode, fictional framing).

77 human-written templates collected by the GPTFuzz authors (Yu et al. 2023, "GPTFUZZER: Red
Teaming Large Language Models with Auto-Generated Jailbreak Prompts") from jailbreakchat.com,
shipped unchanged in `gptfuzz/` with their MIT licence (see `gptfuzz/ATTRIBUTION.md`). Each holds
the placeholder `[INSERT PROMPT HERE]`, where the base item's request goes.

`template` picks one template per item, seeded by the run's seed and the item (so a run's items
meet many templates, and the same command meets the same ones); `template:k=3` picks three
different ones per item (the item counts as jailbroken when any of them is); `template:17` uses
template 17 for every item.
"""

import csv
import io
import random
from functools import cache
from importlib import resources

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.prompts.attacks.base import Attack, Variant, attack, seeded_rng_seed

PLACEHOLDER = "[INSERT PROMPT HERE]"
TEMPLATES_FILE = "gptfuzzer_templates.csv"
MAX_K = 10


@cache
def gptfuzz_templates() -> dict[str, str]:
    """Template id -> text, in the file's order."""
    text = (
        resources.files("modelbench.prompts.attacks").joinpath("gptfuzz", TEMPLATES_FILE).read_text("utf-8")
    )
    templates = {row["id"]: row["text"] for row in csv.DictReader(io.StringIO(text))}
    broken = [tid for tid, body in templates.items() if PLACEHOLDER not in body]
    if broken:
        raise UserError(f"GPTFuzz templates without {PLACEHOLDER}: {', '.join(broken)}")
    return templates


@attack(
    "template",
    "GPTFuzz's 77 human-written jailbreak templates (role-play, DAN, developer mode): one seeded "
    "template per item; template:k=3 for three, template:ID for one by id",
)
class TemplateAttack(Attack):
    measured_on = "gptfuzz"

    def __init__(self, spec):  # type: ignore[no-untyped-def]
        self.k = 1
        self.fixed: str | None = None
        super().__init__(spec)

    def parse_arg(self, arg: str) -> None:
        templates = gptfuzz_templates()
        if arg.startswith("k="):
            try:
                self.k = int(arg[2:])
            except ValueError:
                self.k = 0
            if not 1 <= self.k <= MAX_K:
                raise UserError(f"attack '{self.spec.text}': k must be a whole number from 1 to {MAX_K}")
        elif arg in templates:
            self.fixed = arg
        else:
            raise UserError(
                f"attack '{self.spec.text}': no GPTFuzz template '{arg}' (ids 0-{len(templates) - 1}, or k=N)"
            )

    def chosen(self, item: TestItem, seed: int) -> list[str]:
        if self.fixed is not None:
            return [self.fixed]
        ids = list(gptfuzz_templates())
        return random.Random(seeded_rng_seed(seed, item.uid, self.spec.text)).sample(ids, self.k)

    def variants(self, item: TestItem, seed: int) -> list[Variant]:
        templates = gptfuzz_templates()
        return [
            Variant(f"t{tid}", templates[tid].replace(PLACEHOLDER, item.text))
            for tid in self.chosen(item, seed)
        ]
