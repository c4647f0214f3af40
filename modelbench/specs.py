"""One grammar for SUT and grader specs: the text a user types, parsed once into typed objects.

A spec used to be taken apart in three places (the SUT registry, the compression code and the
grader registry), each with its own idea of where '+' and '@' split it. Here is the one place to
read what a spec means; the factories (`make_sut`, `make_evaluator`) take the parsed objects.

SUT specs:

- `NAME`: an entry of the SUT registry (`smollm2-135m`).
- `hf:PATH`: a local transformers folder or GGUF file (`hf:/models/tiny`).
- `openai:MODEL`: the OpenAI API (`openai:gpt-4o-mini`).
- `openai-compat:MODEL@URL`: any OpenAI-compatible server; the URL starts after the LAST '@', so
  the model may hold '/', ':' or '@' (`openai-compat:org/m:q4@http://host:8000/v1`).
- `BASE+TRANSFORM=ARG[+TRANSFORM=ARG...]`: a local base (a registry name or `hf:PATH`) compressed
  on the fly (`smollm2-135m+wanda=0.5`, `hf:/p+drop-layers=6+magnitude=2:4`). The chain starts at
  the first '+' followed by a known transform name and '=', so a path may contain '+'.

Grader specs: `refusal`, `minilm-ce` or `minilm-ce@DTYPE` (onnx-int8, the default: ONNX Runtime with
int8 weights; onnx-float32; float32 and int8: the torch paths), `minilm-clf`,
`llm-judge` or `llm-judge@SUT-SPEC`, and `llama-guard@URL`, `llama-guard@MODEL@URL` or
`llama-guard@PATH`.

Every object prints back (`str(obj)`) to its canonical text, which is the text it was parsed from
whenever that text was canonical (a chain without spaces): records and error messages quote
exactly what was parsed, and a spec built in code reads the same as one typed by a user. What a
transform's argument means (a sparsity in (0, 1), N:M, a layer count) is checked where the
transform is built, in `modelbench.suts.compress`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from modelbench.errors import UserError

# -- compression chains -----------------------------------------------------------------------------

TRANSFORM_NAMES = ("drop-layers", "magnitude", "wanda")
CHAIN_HELP = "drop-layers=N, magnitude=S, wanda=S (S a fraction in (0, 1), or N:M such as 2:4)"
# The chain starts at the first '+' that is followed by a transform name and '='.
_CHAIN_START = re.compile(r"\+(?=(?:" + "|".join(re.escape(n) for n in TRANSFORM_NAMES) + r")=)")


@dataclass(frozen=True)
class TransformSpec:
    """One step of a compression chain, `NAME=VALUE`; VALUE is kept as written."""

    name: str
    value: str

    def __post_init__(self) -> None:
        if self.name not in TRANSFORM_NAMES:
            raise UserError(f"unknown compression transform '{self.name}' (known: {CHAIN_HELP})")
        if not self.value or "+" in self.value or self.value != self.value.strip():
            raise UserError(f"compression transform '{self.name}' needs a value (known: {CHAIN_HELP})")

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


def parse_transforms(text: str) -> tuple[TransformSpec, ...]:
    """`drop-layers=6+wanda=0.5` -> its steps; spaces around steps are allowed and dropped."""
    if not text.strip():
        raise UserError(f"empty compression chain (use {CHAIN_HELP}, joined with '+')")
    return tuple(_parse_transform(part.strip(), text) for part in text.split("+"))


def _parse_transform(part: str, text: str) -> TransformSpec:
    if not part:
        raise UserError(f"empty transform in compression chain '{text}'")
    name, sep, value = part.partition("=")
    name, value = name.strip(), value.strip()
    if name not in TRANSFORM_NAMES:
        raise UserError(f"unknown compression transform '{name}' in '{text}' (known: {CHAIN_HELP})")
    if not sep or not value:
        raise UserError(f"compression transform '{name}' needs a value (known: {CHAIN_HELP})")
    return TransformSpec(name, value)


# -- SUT specs --------------------------------------------------------------------------------------

SUT_FORMS = "a registry name, hf:PATH, openai:MODEL, openai-compat:MODEL@URL, or BASE+TRANSFORM=ARG"


@dataclass(frozen=True)
class RegistrySpec:
    """A name looked up in the SUT registry (whether it exists depends on the registry in use)."""

    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise UserError(f"empty SUT spec (use {SUT_FORMS})")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class HFSpec:
    """`hf:PATH`: the path as written; `~` is expanded when the SUT is made."""

    adapter: ClassVar[str] = "huggingface"
    path: str

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError("empty path in SUT spec 'hf:' (use hf:/path/to/model)")

    def __str__(self) -> str:
        return f"hf:{self.path}"


@dataclass(frozen=True)
class OpenAISpec:
    """`openai:MODEL`: the OpenAI API."""

    adapter: ClassVar[str] = "openai_compat"
    model: str

    def __post_init__(self) -> None:
        if not self.model:
            raise UserError("empty model in SUT spec 'openai:' (use openai:gpt-4o-mini)")

    def __str__(self) -> str:
        return f"openai:{self.model}"


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True)
class OpenAICompatSpec:
    """`openai-compat:MODEL@URL`: any OpenAI-compatible server."""

    adapter: ClassVar[str] = "openai_compat"
    model: str
    base_url: str

    def __post_init__(self) -> None:
        if not self.model or not _is_url(self.base_url) or "@" in self.base_url:
            raise UserError(f"bad SUT spec '{self}' (use openai-compat:MODEL@http://host:port/v1)")

    def __str__(self) -> str:
        return f"openai-compat:{self.model}@{self.base_url}"


LocalSUTSpec = RegistrySpec | HFSpec


@dataclass(frozen=True)
class CompressedSpec:
    """`BASE+CHAIN`: a local base model compressed by a chain of transforms, left to right."""

    adapter: ClassVar[str] = "compressed"
    base: LocalSUTSpec
    chain: tuple[TransformSpec, ...]
    # The base's canonical text, kept with the spec: what records name as the dense base.
    base_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, RegistrySpec | HFSpec):
            raise UserError(f"'{self}': compression needs a local base model (a registry name or hf:PATH)")
        if not self.chain:
            raise UserError(f"empty compression chain (use {CHAIN_HELP}, joined with '+')")
        object.__setattr__(self, "base_text", str(self.base))

    @property
    def chain_text(self) -> str:
        return "+".join(str(t) for t in self.chain)

    def __str__(self) -> str:
        return f"{self.base}+{self.chain_text}"


SUTSpec = RegistrySpec | HFSpec | OpenAISpec | OpenAICompatSpec | CompressedSpec


def parse_sut_spec(text: str) -> SUTSpec:
    """The one reading of a SUT spec; raises UserError naming the accepted forms."""
    match = _CHAIN_START.search(text)
    if match is not None:
        base_text, chain_text = text[: match.start()], text[match.end() :]
        base = _parse_plain_sut(base_text)
        if not isinstance(base, RegistrySpec | HFSpec):
            raise UserError(f"'{text}': compression needs a local base model (a registry name or hf:PATH)")
        return CompressedSpec(base, parse_transforms(chain_text))
    return _parse_plain_sut(text)


def _parse_plain_sut(text: str) -> RegistrySpec | HFSpec | OpenAISpec | OpenAICompatSpec:
    if text.startswith("hf:"):
        return HFSpec(text.removeprefix("hf:"))
    if text.startswith("openai:"):
        return OpenAISpec(text.removeprefix("openai:"))
    if text.startswith("openai-compat:"):
        model, _, url = text.removeprefix("openai-compat:").rpartition("@")
        if not model or not _is_url(url):
            raise UserError(f"bad SUT spec '{text}' (use openai-compat:MODEL@http://host:port/v1)")
        return OpenAICompatSpec(model, url)
    return RegistrySpec(text)


# -- grader specs -----------------------------------------------------------------------------------
# A built-in kind is one class below: its `kind`, the `forms` it accepts (for help and errors), and
# `parse(text, target)` for `KIND` / `KIND@TARGET`; then one line in `BUILTIN_GRADER_SPECS` and one
# in the `GraderSpec` union. The kinds, their order and their grammar are read from those classes.

# The first is what `minilm-ce` without '@' means (`modelbench.graders.cross_encoder.DEFAULT_DTYPE`).
MINILM_CE_DTYPES = ("onnx-int8", "onnx-float32", "float32", "int8")
LLAMA_GUARD_HELP = "llama-guard needs a backend: llama-guard@http://host:port/v1 or llama-guard@/path"


def _no_target(text: str, target: str | None) -> None:
    if target is not None:
        raise UserError(f"unknown grader '{text}' (known: {grader_forms()})")


@dataclass(frozen=True)
class RefusalSpec:
    """`refusal`: the lexical refusal detector."""

    kind: ClassVar[str] = "refusal"
    forms: ClassVar[str] = "refusal"

    @classmethod
    def parse(cls, text: str, target: str | None) -> GraderSpec:
        _no_target(text, target)
        return cls()

    def __str__(self) -> str:
        return "refusal"


@dataclass(frozen=True)
class MiniLMCESpec:
    """`minilm-ce` or `minilm-ce@DTYPE`; None (no '@') means the default, onnx-int8, and prints back
    without it. `minilm-ce@float32` is the torch float32 path, as before the default moved."""

    kind: ClassVar[str] = "minilm-ce"
    forms: ClassVar[str] = "minilm-ce, " + ", ".join(
        f"minilm-ce@{d}" for d in ("int8", "float32", "onnx-int8", "onnx-float32")
    )

    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in MINILM_CE_DTYPES:
            raise UserError(f"unknown grader '{self}' (known: {grader_forms()})")

    @classmethod
    def parse(cls, text: str, target: str | None) -> GraderSpec:
        if target is not None and target not in MINILM_CE_DTYPES:
            raise UserError(f"unknown grader '{text}' (known: {grader_forms()})")
        return cls(target)

    def __str__(self) -> str:
        return "minilm-ce" if self.dtype is None else f"minilm-ce@{self.dtype}"


@dataclass(frozen=True)
class MiniLMClfSpec:
    """`minilm-clf`: MiniLM embeddings into a logistic head."""

    kind: ClassVar[str] = "minilm-clf"
    forms: ClassVar[str] = "minilm-clf"

    @classmethod
    def parse(cls, text: str, target: str | None) -> GraderSpec:
        _no_target(text, target)
        return cls()

    def __str__(self) -> str:
        return "minilm-clf"


@dataclass(frozen=True)
class LLMJudgeSpec:
    """`llm-judge` (the default judge) or `llm-judge@SUT-SPEC` (any SUT spec, parsed as one)."""

    kind: ClassVar[str] = "llm-judge"
    forms: ClassVar[str] = "llm-judge, llm-judge@SUT"

    judge: SUTSpec | None = None

    @classmethod
    def parse(cls, text: str, target: str | None) -> GraderSpec:
        if target is None:
            return cls()
        if not target:
            raise UserError(f"'{text}': give a SUT spec after '@' (use llm-judge or llm-judge@SUT)")
        try:
            return cls(parse_sut_spec(target))
        except UserError as exc:
            raise UserError(f"grader '{text}': {exc}") from None

    def __str__(self) -> str:
        return "llm-judge" if self.judge is None else f"llm-judge@{self.judge}"


@dataclass(frozen=True)
class LlamaGuardAPISpec:
    """`llama-guard@URL` (the server is asked which model it serves) or `llama-guard@MODEL@URL`;
    its `parse` reads both backends of the kind (`llama-guard@PATH` is `LlamaGuardLocalSpec`)."""

    kind: ClassVar[str] = "llama-guard"
    forms: ClassVar[str] = "llama-guard@URL, llama-guard@MODEL@URL, llama-guard@PATH"

    url: str
    model: str | None = None

    def __post_init__(self) -> None:
        if not _is_url(self.url) or "@" in self.url or self.model == "":
            raise UserError(f"bad grader spec '{self}' ({LLAMA_GUARD_HELP})")

    @classmethod
    def parse(cls, text: str, target: str | None) -> GraderSpec:
        if not target:
            raise UserError(LLAMA_GUARD_HELP)
        model, at, url = target.rpartition("@")
        if _is_url(url):
            if at and not model:
                raise UserError(f"bad grader spec '{text}' (empty model before '@'; {LLAMA_GUARD_HELP})")
            return cls(url, model or None)
        return LlamaGuardLocalSpec(target)

    def __str__(self) -> str:
        return f"llama-guard@{self.url}" if self.model is None else f"llama-guard@{self.model}@{self.url}"


@dataclass(frozen=True)
class LlamaGuardLocalSpec:
    """`llama-guard@PATH`: a local Llama Guard checkpoint; `~` is expanded when it is loaded."""

    kind: ClassVar[str] = "llama-guard"

    path: str

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError(LLAMA_GUARD_HELP)

    def __str__(self) -> str:
        return f"llama-guard@{self.path}"


@dataclass(frozen=True)
class PluginGraderSpec:
    """`KIND` or `KIND@TARGET` for an evaluator kind registered by a plugin (or a test) without a
    grammar of its own: the target is kept as written and the evaluator's factory reads it."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}@{self.target}"


# The built-in kinds, in `modelbench list graders` order; each class parses its kind.
BUILTIN_GRADER_SPECS = (RefusalSpec, MiniLMCESpec, MiniLMClfSpec, LLMJudgeSpec, LlamaGuardAPISpec)
GRADER_KINDS = tuple(spec.kind for spec in BUILTIN_GRADER_SPECS)

GraderSpec = (
    RefusalSpec
    | MiniLMCESpec
    | MiniLMClfSpec
    | LLMJudgeSpec
    | LlamaGuardAPISpec
    | LlamaGuardLocalSpec
    | PluginGraderSpec
)
# A kind's grammar: (whole text, target after the first '@' or None) -> spec; raises UserError.
GraderParser = Callable[[str, str | None], GraderSpec]


def _plugin(kind: str) -> GraderParser:
    def parse(text: str, target: str | None) -> GraderSpec:
        if target == "":
            raise UserError(f"bad grader spec '{text}' (nothing after '@')")
        return PluginGraderSpec(kind, target)

    return parse


# Kind -> its grammar, in `modelbench list graders` order: the built-ins' from their classes;
# `register_grader_kind` adds a plugin's (the evaluator registry calls it for every kind it
# registers that this table does not know).
_GRADER_PARSERS: dict[str, GraderParser] = {spec.kind: spec.parse for spec in BUILTIN_GRADER_SPECS}
_BUILTIN_FORMS = ", ".join(spec.forms for spec in BUILTIN_GRADER_SPECS)


def register_grader_kind(kind: str, parser: GraderParser | None = None) -> None:
    """Teach the grammar a new evaluator kind: `KIND[@TARGET]` parses to `PluginGraderSpec` unless a
    parser of the kind's own is given. Built-in kinds keep their grammar."""
    if kind in GRADER_KINDS:
        return
    if not kind or "@" in kind or "+" in kind or kind != kind.strip():
        raise ValueError(f"bad grader kind {kind!r}: a kind is one word without '@' or '+'")
    _GRADER_PARSERS[kind] = parser or _plugin(kind)


def forget_grader_kind(kind: str) -> None:
    """Undo `register_grader_kind` for a plugin kind (built-in kinds stay)."""
    if kind not in GRADER_KINDS:
        _GRADER_PARSERS.pop(kind, None)


def grader_forms() -> str:
    """Every accepted form, for error messages: the built-ins' and any registered plugin kinds'."""
    plugins = [kind for kind in _GRADER_PARSERS if kind not in GRADER_KINDS]
    return ", ".join([_BUILTIN_FORMS, *plugins])


def parse_grader_spec(text: str) -> GraderSpec:
    """The one reading of a grader spec: `KIND` or `KIND@TARGET`, split at the first '@'."""
    kind, sep, target = text.partition("@")
    parser = _GRADER_PARSERS.get(kind)
    if parser is None:
        from modelbench.plugins import load_plugins

        load_plugins()  # an installed plugin may bring the kind
        parser = _GRADER_PARSERS.get(kind)
    if parser is None:
        raise UserError(f"unknown grader '{text}' (known: {grader_forms()})")
    return parser(text, target if sep else None)


def as_grader_spec(spec: str | GraderSpec) -> GraderSpec:
    """Entry points accept text or a parsed spec; text is parsed here, once."""
    return parse_grader_spec(spec) if isinstance(spec, str) else spec
