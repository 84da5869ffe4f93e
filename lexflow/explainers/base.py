"""The explainer contract: a request per latent in, several sampled answers out.

A backend subclasses :class:`Explainer`, implements :meth:`Explainer.explain` (and may override
:meth:`Explainer.explain_many` to run requests concurrently), and is registered under its URI
scheme in the ``lexflow.explainers`` entry-point group::

    [options.entry_points]
    lexflow.explainers =
        myprovider = my_package.explainer:MyExplainer

``lexflow explain ... --explainer myprovider:/some-model`` then builds
``MyExplainer.from_uri("some-model", options)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lexflow.errors import ConfigError, ExplainerError, did_you_mean
from lexflow.names import EP_EXPLAINERS as ENTRY_POINT_GROUP
from lexflow.stages.evidence import Evidence


@dataclass(frozen=True)
class ExplainRequest:
    """What an explainer is asked about one latent.

    Attributes:
        index: latent index.
        label: zero-padded index used in tags and file names ("03").
        name: the latent's name from the model metadata, if any.
        bias: the inductive bias the prompt follows (disentanglement, combination, conditional).
        condition: the condition named by the conditional bias, if any.
        values: the grid's column values, increasing, in ``unit``.
        grid_png: the traversal grid (rows = base samples, columns = values) as PNG bytes.
        comparison_png: the disentanglement comparison (two rows) as PNG bytes, or None.
        evidence: measurements of the traversal.
        comparison_evidence: measurements of the comparison rows, or None.
        samples: how many answers to return (the method's n).
        group: for the combination bias, the latents that move together (this one included);
            for a group or attribute item, the latents it moves.
        kind: what ``index`` names: ``latent`` (one latent), ``group`` (latents moved together),
            ``attribute`` (a CSVAE attribute direction) or ``direction`` (an h-space direction
            of a diffusion model).
        unit: the unit of ``values``: ``prior std``, ``guidance steps`` (signed: negative moves
            along -direction) or ``multiples of the attribute direction``.
    """

    index: int
    label: str
    bias: str
    values: tuple[float, ...]
    grid_png: bytes
    evidence: Evidence
    samples: int
    name: str | None = None
    condition: str | None = None
    comparison_png: bytes | None = None
    comparison_evidence: Evidence | None = None
    group: tuple[int, ...] | None = None
    kind: str = "latent"
    unit: str = "prior std"


@dataclass(frozen=True)
class ExplainResponse:
    """The answers for one latent.

    Attributes:
        index: latent index.
        answers: sampled answers; "" marks a failed, empty or refused answer (never an explanation).
        failures: why each failed answer failed (same order as the failures occurred).
        calls, input_tokens, output_tokens: usage; cost_usd: estimated cost in US dollars.
    """

    index: int
    answers: tuple[str, ...]
    failures: tuple[str, ...] = ()
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)


class Explainer(ABC):
    """Base class of explainer backends.

    Attributes:
        scheme: the URI scheme it is registered under.
        uri: the full URI it was built from.
        is_mllm: False for the offline measurement explainer; True for multimodal LLMs.
    """

    scheme: ClassVar[str]
    is_mllm: ClassVar[bool] = True

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> Explainer:
        """Build from the part of the URI after ``scheme:/`` (None for a bare name)."""
        return cls(cls.scheme if target is None else f"{cls.scheme}:/{target}")

    @abstractmethod
    def explain(self, request: ExplainRequest) -> ExplainResponse:
        """Answer ``request.samples`` times for one latent."""

    def explain_many(
        self,
        requests: Sequence[ExplainRequest],
        *,
        on_done: Callable[[ExplainResponse], None] | None = None,
    ) -> Iterator[ExplainResponse]:
        """Answer many latents; the default runs them one after another."""
        for request in requests:
            response = self.explain(request)
            if on_done:
                on_done(response)
            yield response


def available_explainers() -> dict[str, Any]:
    """Explainer schemes -> lazily loadable classes (built-ins and installed plugins)."""
    from lexflow.plugins import registry

    return registry(ENTRY_POINT_GROUP)


def parse_uri(uri: str) -> tuple[str, str | None]:
    """``openai:/gpt-4o`` -> ("openai", "gpt-4o"); ``measure`` -> ("measure", None)."""
    uri = uri.strip()
    if ":/" in uri:
        scheme, target = uri.split(":/", 1)
        target = target.lstrip("/") if scheme != "transformers" else target
        if not target:
            raise ConfigError(f"Explainer URI {uri!r} names no model: use '{scheme}:/<model>'.")
        return scheme, target
    if ":" in uri:
        raise ConfigError(f"Explainer URI {uri!r} is malformed: use 'scheme:/model' or 'measure'.")
    return uri, None


def get_explainer(uri: str, options: Mapping[str, Any] | None = None) -> Explainer:
    """Build the explainer ``uri`` names, or fail with the available names."""
    scheme, target = parse_uri(uri)
    registry = available_explainers()
    if scheme not in registry:
        names = sorted(registry)
        raise ConfigError(
            f"Unknown explainer {uri!r}. Available: {', '.join(names) or 'none'}."
            + did_you_mean(scheme, names)
        )
    try:
        cls = registry[scheme].load()
    except ImportError as exc:
        raise ExplainerError(f"Explainer {scheme!r} could not be imported: {exc}") from exc
    return cls.from_uri(target, dict(options or {}))
