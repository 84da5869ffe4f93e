"""Prompt text, one template per inductive bias, built without I/O (METHOD.md section 2).

A bias is a formula plus a symbol-to-word mapping; its statement and task are sentences written
with ``{symbol}`` placeholders that the mapping fills, so the words sent to the MLLM are the
formula's words. The disentanglement statement, for example, comes out as the method's sentence
"These two rows of images show the same pattern of change despite other variations."

The set is open: :func:`register_bias` adds a :class:`Bias`, :func:`load_biases` reads them from
a YAML file (the format is in docs/explainers.md)::

    name: monotonic
    formula: "d x / d z_i > 0"
    mapping: {z_i: "the latent variable {latent}", ">": "steadily"}
    statement: "Along each row the images change {>} as {z_i} increases."
    task: "Describe what changes."

Context placeholders available to mappings, statements and tasks: ``{latent}`` (``z_3``),
``{condition}`` and ``{group}`` (``z_0, z_1 and z_2``). The paper's optional step, a text LLM
writing the prompt from the formula and one in-context example, is :func:`prompt_writing_request`
(pure) and :func:`write_statement` (one call through an MLLM explainer's client).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lexflow.errors import ConfigError, did_you_mean
from lexflow.explainers.base import ExplainRequest


class TextAsker(Protocol):
    """What :func:`write_statement` needs of an explainer: its URI and one text-only call."""

    uri: str

    def ask_text(self, text: str) -> str: ...

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
CONTEXT_NAMES = ("latent", "condition", "group")


@dataclass(frozen=True)
class Bias:
    """An inductive bias as the prompt sees it.

    Attributes:
        name: what requests and YAML files call it.
        formula: the bias as a formula (documentation, and input for :func:`write_statement`).
        mapping: formula symbol -> words; the words may use the context placeholders.
        statement: the sentence stating the bias, with ``{symbol}`` placeholders.
        task: what the MLLM is asked to describe, with placeholders.
        comparison: whether the disentanglement comparison rows are shown (image 2).
        needs: context the bias cannot do without (``condition``, ``group``).
    """

    name: str
    formula: str
    mapping: Mapping[str, str]
    statement: str
    task: str
    comparison: bool = False
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = {p for text in (self.statement, self.task) for p in _PLACEHOLDER.findall(text)}
        unknown -= set(self.mapping) | set(CONTEXT_NAMES)
        if unknown:
            raise ConfigError(
                f"Bias {self.name!r}: placeholders {sorted(unknown)} are neither symbols of its "
                f"mapping ({', '.join(sorted(self.mapping))}) nor {', '.join(CONTEXT_NAMES)}."
            )
        bad_needs = set(self.needs) - {"condition", "group"}
        if bad_needs:
            raise ConfigError(
                f"Bias {self.name!r}: needs may list condition, group; got {sorted(bad_needs)}.")

    def render(self, text: str, context: Mapping[str, str]) -> str:
        """Fill ``{symbol}`` from the mapping (itself filled from ``context``), then the context."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.mapping:
                return _PLACEHOLDER.sub(lambda m: context.get(m.group(1), m.group(0)), self.mapping[name])
            return context.get(name, match.group(0))

        return _PLACEHOLDER.sub(fill, text)


DISENTANGLEMENT = Bias(
    name="disentanglement",
    formula="p(z_i | z_i' = a) = p(z_i | z_i' = b) for all i != i', a != b",
    mapping={"z_i": "pattern of change", "=": "same", "z_i'": "other variations"},
    statement="These two rows of images show the {=} {z_i} despite {z_i'}.",
    task="Describe the {z_i} that {latent} controls.",
    comparison=True,
)
COMBINATION = Bias(
    name="combination",
    formula="y = f(z_G), G = {group}",
    mapping={"z_G": "the latent variables {group}", "f": "jointly control", "y": "one property"},
    statement="In these images {z_G} {f} {y}.",
    task="Describe the property that {z_G} {f}, as seen when {latent} changes.",
    needs=("group",),
)
CONDITIONAL = Bias(
    name="conditional",
    formula="p(x | z_i, c)",
    mapping={"z_i": "pattern of change", "|": "given", "c": 'the condition "{condition}"'},
    statement="These images show a {z_i} {|} {c}.",
    task="Describe the {z_i} that {latent} controls {|} {c}.",
    needs=("condition",),
)

NO_BIAS = Bias(
    name="none",
    formula="",
    mapping={"z_i": "pattern of change"},
    statement="",
    task="Describe the {z_i} that {latent} controls.",
)
"""The paper's ablation "without the bias prompts": the grid and the task, no statement of an
inductive bias and no comparison row (the quality suite's ``no_bias`` variant)."""

_REGISTRY: dict[str, Bias] = {b.name: b for b in (DISENTANGLEMENT, COMBINATION, CONDITIONAL, NO_BIAS)}


def register_bias(bias: Bias, *, replace: bool = False) -> None:
    """Add a user bias; a built-in name is only replaced when asked to."""
    if bias.name in _REGISTRY and not replace:
        raise ConfigError(f"A bias named {bias.name!r} exists; pass replace=True to redefine it.")
    _REGISTRY[bias.name] = bias


def get_bias(name: str, extra: Mapping[str, Bias] | None = None) -> Bias:
    """The bias ``name``: from ``extra`` (an explainer's own, from its ``biases`` file) first, then
    the built-ins and those registered with :func:`register_bias`."""
    known = {**_REGISTRY, **(extra or {})}
    if name not in known:
        names = sorted(known)
        raise ConfigError(
            f"Unknown bias {name!r}. Available: {', '.join(names)}." + did_you_mean(name, names))
    return known[name]


def available_biases() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def bias_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Bias:
    """A bias from parsed YAML/JSON, every problem reported at once."""
    fields = {"name", "formula", "mapping", "statement", "task", "comparison", "needs"}
    problems = [f"unknown field {k!r}" + did_you_mean(str(k), fields) for k in data if k not in fields]
    for required in ("name", "formula", "mapping", "statement", "task"):
        if not data.get(required):
            problems.append(f"missing {required!r}")
    mapping = data.get("mapping") or {}
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
        problems.append("mapping must map each formula symbol to words (strings)")
    if problems:
        raise ConfigError(f"Bias in {source}: " + "; ".join(problems) + ".")
    return Bias(
        name=str(data["name"]), formula=str(data["formula"]),
        mapping={str(k): str(v) for k, v in mapping.items()}, statement=str(data["statement"]),
        task=str(data["task"]), comparison=bool(data.get("comparison", False)),
        needs=tuple(data.get("needs") or ()),
    )


def load_biases(path: str | Path, *, replace: bool = False) -> list[Bias]:
    """Read one bias (a mapping) or several (a list, or ``biases: [...]``) from YAML; register them
    for this process (explainers given a ``biases`` file keep theirs to themselves instead)."""
    biases = read_biases(path)
    for b in biases:
        register_bias(b, replace=replace)
    return biases


def read_biases(path: str | Path) -> list[Bias]:
    """Read one bias (a mapping) or several (a list, or ``biases: [...]``) from YAML (no aliases)."""
    from lexflow.safe_yaml import read_yaml

    p = Path(path)
    data = read_yaml(p, "biases file")
    if isinstance(data, Mapping) and "biases" in data:
        data = data["biases"]
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, Mapping) for item in items):
        raise ConfigError(f"{p}: expected a bias (a mapping) or a list of them.")
    return [bias_from_dict(item, str(p)) for item in items]


# --- the prompt -------------------------------------------------------------------------------

GRID_INTRO = (
    "Image 1 is a grid of images decoded by a generative model. In every row the latent variable "
    "{latent} increases from left to right, from {low} to {high} {unit}; each "
    "row starts from a different random sample, and everything else is held fixed."
)
# What moves along a row, per request kind (ExplainRequest.kind); {unit} from UNIT_WORDS.
GRID_INTROS = {
    "latent": GRID_INTRO,
    "group": (
        "Image 1 is a grid of images decoded by a generative model. In every row the latent "
        "variables {members} (together called {latent}) are set together to values increasing "
        "from left to right, from {low} to {high} {unit}; each row starts from a different "
        "random sample, and everything else is held fixed."
    ),
    "attribute": (
        "Image 1 is a grid of images decoded by a generative model. In every row the latent code "
        "moves along the direction {latent} of an attribute, from left to right, from {low} to "
        "{high} {unit}; each row starts from a different random sample, and everything else is "
        "held fixed."
    ),
    "direction": (
        "Image 1 is a grid of images made by a diffusion model. In every row the image is moved "
        "along the direction {latent} of the model's internal space, from left to right, from "
        "{low} to {high} {unit} (negative values move the opposite way; the middle column is the "
        "unchanged image); each row starts from a different random sample, and everything else "
        "is held fixed."
    ),
}
# ExplainRequest.unit -> the words a prompt uses for it.
UNIT_WORDS = {
    "prior std": "prior standard deviations",
    "guidance steps": "guidance steps",
    "multiples of the attribute direction": "multiples of the attribute direction",
}
# ExplainRequest.kind -> the symbol letter of an item ("z_3", "g_1", "a_0", "d_2").
KIND_SYMBOLS = {"latent": "z", "group": "g", "attribute": "a", "direction": "d"}
COMPARISON_INTRO = (
    "Image 2 has two rows with the same change of {latent}; in the second row another latent "
    "variable is set to a different value."
)
# The comparison row per request kind: what the second row changes besides the item itself.
COMPARISON_INTROS = {
    "latent": COMPARISON_INTRO,
    "group": ("Image 2 has two rows with the same change of {latent}; in the second row another "
              "group of latent variables is set to a different value."),
    "attribute": ("Image 2 has two rows with the same change along {latent}; in the second row "
                  "the code is also moved along another attribute direction."),
    "direction": ("Image 2 has two rows with the same change along {latent}; in the second row "
                  "the starting image was first moved along another direction."),
}
GROUNDING_INTRO = "Measurements of the images, for reference: {summary}"
ANSWER_FORMAT = (
    'Answer with one JSON object and nothing else: {{"label": "<a name of at most four words>", '
    '"sentence": "<one sentence: as {latent} increases, ...>", '
    '"increases": "<what becomes larger or stronger as {latent} increases>"}}'
)


def latent_symbol(index: int, kind: str = "latent") -> str:
    """``z_3`` for latent 3; ``g_1`` for group 1, ``a_0`` attribute 0, ``d_2`` direction 2."""
    return f"{KIND_SYMBOLS.get(kind, 'z')}_{index}"


def words_list(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _number(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class Prompt:
    """What one call sends: the text and the images, in order (PNG bytes)."""

    text: str
    images: tuple[bytes, ...] = field(repr=False)


def build_prompt(request: ExplainRequest, *, bias: Bias | None = None,
                 grounding: str | None = None) -> Prompt:
    """The prompt for one latent: images introduced, the bias stated, the task, the answer format.

    ``grounding`` is the evidence summary to include (see lexflow.explainers.grounding), or None.
    """
    bias = bias or get_bias(request.bias)
    group = request.group
    kind = request.kind if request.kind in GRID_INTROS else "latent"
    context = {
        "latent": latent_symbol(request.index, kind),
        "condition": request.condition or "",
        "group": words_list([latent_symbol(i) for i in group]) if group else latent_symbol(request.index),
    }
    missing = [n for n in bias.needs if not (request.condition if n == "condition" else group)]
    if missing:
        raise ConfigError(f"Bias {bias.name!r} needs a {' and a '.join(missing)} for latent {request.index}.")
    low, high = (request.values[0], request.values[-1]) if request.values else (0.0, 0.0)
    lines = [GRID_INTROS[kind].format(
        latent=context["latent"], low=_number(low), high=_number(high),
        unit=UNIT_WORDS.get(request.unit, request.unit),
        members=words_list([latent_symbol(i) for i in group or ()]))]
    images = [request.grid_png]
    if bias.comparison and request.comparison_png:
        lines.append(COMPARISON_INTROS[kind].format(latent=context["latent"]))
        images.append(request.comparison_png)
        lines.append(bias.render(bias.statement, context))
    elif not bias.comparison and bias.statement:
        lines.append(bias.render(bias.statement, context))
    if grounding:
        lines.append(GROUNDING_INTRO.format(summary=grounding))
    lines.append(bias.render(bias.task, context))
    lines.append(ANSWER_FORMAT.format(latent=context["latent"]))
    return Prompt("\n".join(lines), tuple(images))


# --- the optional step: a text LLM writes the statement ------------------------------------------

EXAMPLE_BIAS = DISENTANGLEMENT
WRITER_INSTRUCTIONS = (
    "You write one sentence for a prompt that asks a multimodal model to explain a latent variable "
    "of a generative model. The sentence states an inductive bias, given as a formula, in plain "
    "words, using the symbol-to-word mapping. Write only the sentence."
)


def prompt_writing_request(bias: Bias, example: Bias = EXAMPLE_BIAS) -> str:
    """The text sent to a text LLM so that it writes ``bias``'s statement, with one example."""

    def block(b: Bias) -> str:
        mapping = "; ".join(f"{k} -> {v}" for k, v in b.mapping.items())
        return f"Formula: {b.formula}\nMapping: {mapping}"

    example_sentence = example.render(example.statement, {})
    return (f"{WRITER_INSTRUCTIONS}\n\nExample.\n{block(example)}\nSentence: {example_sentence}\n\n"
            f"Now this one.\n{block(bias)}\nSentence:")


def write_statement(bias: Bias, explainer: TextAsker, example: Bias = EXAMPLE_BIAS) -> Bias:
    """Ask ``explainer``'s model (text only) for the statement; return the bias using it."""
    text = explainer.ask_text(prompt_writing_request(bias, example)).strip()
    sentence = text.splitlines()[0].removeprefix("Sentence:").strip().strip('"') if text else ""
    sentence = sentence.replace("{", "(").replace("}", ")")  # model text holds no placeholders
    if not sentence:
        raise ConfigError(f"{explainer.uri} wrote no statement for bias {bias.name!r}.")
    return Bias(bias.name, bias.formula, bias.mapping, sentence, bias.task, bias.comparison, bias.needs)

