"""Which languages the evaluators can speak for, and which items of a run fall outside them.

Each evaluator declares `languages`: the ISO 639-1 codes it was trained and measured on (see
`Evaluator.languages`). A run whose items have a locale whose language one of its evaluators did
not declare gets a `LanguageNotice` per such locale: those verdicts are unmeasured, and the run
says so on the console, in its record and in its report instead of grading them silently. An
evaluator that declares None makes no claim and raises no notice.
"""

from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from modelbench.core import TestItem
from modelbench.graders.base import Evaluator

UNDETERMINED = "und"  # ISO 639-2 for "undetermined": an empty or unreadable locale

# English names of the languages evaluators declare or AILuminate releases use; any other code
# is shown as itself.
LANGUAGE_NAMES = {
    "ar": "Arabic",
    "bn": "Bengali",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fr": "French",
    "hi": "Hindi",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "sw": "Swahili",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


def language_of(locale: str) -> str:
    """The ISO 639-1 language of a locale: "fr_FR" -> "fr", "en-us" -> "en", "pt" -> "pt".

    Empty or unreadable locales (no two-letter language before `_` or `-`) are "und".
    """
    primary = (locale or "").strip().replace("-", "_").split("_", 1)[0].lower()
    if len(primary) == 2 and primary.isascii() and primary.isalpha():
        return primary
    return UNDETERMINED


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, "an unknown language" if code == UNDETERMINED else code)


def declared_languages(evaluator: Evaluator) -> tuple[str, ...] | None:
    """The evaluator's declared languages, lower case; None when it makes no claim."""
    languages = getattr(evaluator, "languages", None)
    if languages is None:
        return None
    if isinstance(languages, str):  # ("en") written for ("en",)
        languages = (languages,)
    return tuple(str(code).strip().lower() for code in languages)


def describe_languages(languages: Sequence[str] | None) -> str:
    """For display: "English only", "English, French and Thai", or "not declared"."""
    if languages is None:
        return "not declared"
    names = [language_name(code) for code in dict.fromkeys(languages)]
    if not names:
        return "no language"
    if len(names) == 1:
        return f"{names[0]} only"
    return f"{', '.join(names[:-1])} and {names[-1]}"


class LanguageNotice(BaseModel):
    """Items of one locale graded by evaluators that were not trained and measured on its language."""

    locale: str
    language: str
    n_items: int
    evaluators: list[str]
    # What each of those evaluators declared, so that the message can be rebuilt from a record.
    evaluator_languages: dict[str, list[str]] = Field(default_factory=dict)

    def message(self) -> str:
        items = f"{self.n_items} item{'s' if self.n_items != 1 else ''}"
        if self.language != UNDETERMINED:
            where = f"in {self.locale}"
        elif self.locale.strip():
            where = f"in locale '{self.locale}' (language unknown)"
        else:
            where = "with no locale"
        groups: dict[tuple[str, ...], list[str]] = {}
        for uid in self.evaluators:
            groups.setdefault(tuple(self.evaluator_languages.get(uid) or ()), []).append(uid)
        trained = " and on ".join(
            f"{describe_languages(langs) if langs else 'undeclared languages'} ({', '.join(uids)})"
            for langs, uids in groups.items()
        )
        one = len(self.evaluators) == 1
        return (
            f"{items} {where}: graded by {'an evaluator' if one else 'evaluators'} trained and measured on "
            f"{trained}; {'its' if one else 'their'} verdicts on these items are unmeasured"
        )


def language_notices(items: Iterable[TestItem], evaluators: Sequence[Evaluator]) -> list[LanguageNotice]:
    """One notice per locale of `items` that at least one evaluator did not declare, largest first.

    Empty when every item's language is declared by every evaluator (or evaluators declare None).
    """
    declared = {e.uid: declared_languages(e) for e in evaluators}
    claims = {uid: langs for uid, langs in declared.items() if langs is not None}
    if not claims:
        return []
    notices = []
    for locale, n in Counter(item.locale for item in items).items():
        language = language_of(locale)
        uncovered = [uid for uid, langs in claims.items() if language not in langs]
        if uncovered:
            notices.append(
                LanguageNotice(
                    locale=locale,
                    language=language,
                    n_items=n,
                    evaluators=uncovered,
                    evaluator_languages={uid: list(claims[uid]) for uid in uncovered},
                )
            )
    notices.sort(key=lambda notice: (-notice.n_items, notice.locale))
    return notices
