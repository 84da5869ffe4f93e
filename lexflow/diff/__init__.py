"""``lexflow diff A B``: which latents mean the same, something else, nothing any more, or
something new, between two explained model versions (A the reference, B the candidate).

::

    lexflow diff models:/vae@champion models:/vae/4 [--json] [--html page.html] [--no-record]

Stages, one module each, data going one way: :mod:`~lexflow.diff.registry` (every MLflow call:
read both explanations, load both decoders, fetch grids, record the diff),
:mod:`~lexflow.diff.behaviour` (re-decode both models on the same base codes),
:mod:`~lexflow.diff.similarity` (the stated similarity), :mod:`~lexflow.diff.match` (Hungarian
matching and statuses), :mod:`~lexflow.diff.result` and :mod:`~lexflow.diff.report` (documents),
:mod:`~lexflow.diff.cli`. Exit codes: 0 done, 1 failure while running, 2 bad input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lexflow.diff.errors import DiffInputError, NotExplainedError
from lexflow.diff.match import MATCH_THRESHOLD, SAME_THRESHOLD, Match, Side, classify
from lexflow.diff.result import DiffResult
from lexflow.errors import LexflowError

__all__ = ["DiffInputError", "DiffOptions", "DiffResult", "Match", "NotExplainedError", "Side",
           "compare", "diff"]

# Options of the two explanation runs that change what their records mean, and what a
# difference in each means for the diff.
_TRAVERSAL = ("steps", "span")
_BASE = ("rows", "seed")
_ANSWERS = ("explainer", "samples", "threshold", "certainty", "bias")


@dataclass(frozen=True)
class DiffOptions:
    """How to diff.

    Attributes:
        decode: re-decode both models on the same base codes (when their latent_dim agree).
        rows: base codes for re-decoding (the first is the zero code).
        seed: seed of the other base codes; None: A's explanation seed.
        certainty: how explanations are compared: ``bow`` (bag-of-words cosine), ``semantic``
            or ``semantic:<model path>`` (lexflow.uncertainty.similarity_for).
        same_threshold: combined similarity at or above which two explained latents mean the same.
        match_threshold: below it two explained latents are not the same latent (lost + new).
        device: where to decode (``auto``, ``cpu``, ``cuda``...).
    """

    decode: bool = True
    rows: int = 8
    seed: int | None = None
    certainty: str = "bow"
    same_threshold: float = SAME_THRESHOLD
    match_threshold: float = MATCH_THRESHOLD
    device: str = "auto"

    def check(self) -> None:
        problems = []
        if self.rows < 1:
            problems.append(f"rows must be at least 1; got {self.rows}")
        for name in ("same_threshold", "match_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be in [0, 1]; got {value}")
        if self.match_threshold > self.same_threshold:
            problems.append(f"match_threshold ({self.match_threshold}) must not exceed "
                            f"same_threshold ({self.same_threshold})")
        if problems:
            raise DiffInputError("Bad diff options: " + "; ".join(problems) + ".")


def setting_warnings(a: Side, b: Side) -> list[str]:
    """One warning per setting that differs between the two explanations, saying what it means."""
    out = []

    def differ(key: str) -> tuple[str, str] | None:
        va, vb = a.config.get(key), b.config.get(key)
        return (str(va), str(vb)) if va is not None and vb is not None and va != vb else None

    for key in _TRAVERSAL:
        d = differ(key)
        if d:
            out.append(f"{key} differs (A: {d[0]}, B: {d[1]}): the stored evidence is compared by "
                       f"direction only; re-decoded traversals use A's steps and span for both.")
    for key in _BASE:
        d = differ(key)
        if d:
            out.append(f"{key} differs (A: {d[0]}, B: {d[1]}): the stored evidence comes from "
                       f"different base codes; re-decoded traversals share theirs.")
    for key in _ANSWERS:
        d = differ(key)
        if d:
            out.append(f"{key} differs (A: {d[0]}, B: {d[1]}): explanations and certainties may "
                       f"differ because of the setting, not the model.")
    if a.latent_dim != b.latent_dim:
        out.append(f"latent_dim differs (A: {a.latent_dim}, B: {b.latent_dim}): latents are "
                   f"matched on stored evidence and explanations only (no re-decoding).")
    for side, name in ((a, "A"), (b, "B")):
        if len(side.latents) < side.latent_dim:
            out.append(f"{name}'s explanation measured {len(side.latents)} of {side.latent_dim} "
                       f"latents (a subset run); the others count as unclear.")
    return out


def _frame_values(config: Mapping[str, str]) -> tuple[float, ...]:
    try:
        steps, span = int(config.get("steps", 5)), float(config.get("span", 3.0))
    except ValueError:
        steps, span = 5, 3.0
    steps = max(steps, 2)
    return tuple(-span + 2 * span * k / (steps - 1) for k in range(steps))


def compare(a: Side, b: Side, options: DiffOptions, *, behaviour: tuple[Any, Any] | None = None,
            warnings: tuple[str, ...] = ()) -> DiffResult:
    """The diff from what was read (pure): ``behaviour`` holds both sides' Signatures or None."""
    from lexflow.diff.similarity import (
        Components,
        behaviour_similarity,
        evidence_similarity,
        text_similarity,
    )
    from lexflow.uncertainty import similarity_for

    recs_a = [a.record(i) for i in range(a.latent_dim)]
    recs_b = [b.record(j) for j in range(b.latent_dim)]
    values: dict[str, np.ndarray] = {}
    ev, signed = evidence_similarity(recs_a, recs_b)
    if behaviour is not None:
        values["behaviour"], signed = behaviour_similarity(*behaviour)
    values["evidence"] = ev
    texts_a = [a.explanation(i) for i in range(a.latent_dim)]
    texts_b = [b.explanation(j) for j in range(b.latent_dim)]
    values["text"] = text_similarity(texts_a, texts_b, similarity_for(options.certainty))
    comps = Components(values, signed)
    used = tuple(k for k, m in values.items() if not np.isnan(m).all())
    matches = classify(a, b, comps.combined(), values, signed,
                       same_threshold=options.same_threshold,
                       match_threshold=options.match_threshold)
    return DiffResult(a, b, matches, used, options.same_threshold, options.match_threshold,
                      tuple(warnings))


def diff(uri_a: str, uri_b: str, options: DiffOptions | None = None) -> DiffResult:
    """Diff the explanations of ``uri_a`` (reference) and ``uri_b`` (candidate).

    Raises ModelNotFoundError (a model, version or alias that does not exist; the ones that do
    are named), NotExplainedError (a version without a finished explanation; names the
    ``lexflow explain`` command), DiffInputError, TrackingError.
    """
    from lexflow.diff import registry
    from lexflow.uncertainty import similarity_for

    options = options or DiffOptions()
    options.check()
    similarity_for(options.certainty)  # a bad --certainty fails before anything is downloaded
    a = registry.read_side(uri_a)
    b = registry.read_side(uri_b)
    warnings = setting_warnings(a, b)
    behaviour = None
    can_decode = (a.latent_dim == b.latent_dim and a.traversal_kind == b.traversal_kind == "latent")
    if options.decode and can_decode:
        behaviour = _behaviour(a, b, options, warnings)
    return compare(a, b, options, behaviour=behaviour, warnings=tuple(warnings))


def _behaviour(a: Side, b: Side, options: DiffOptions, warnings: list[str]) -> tuple[Any, Any] | None:
    """Both models' signatures on the same base codes, or None (with a warning) when a decoder
    cannot be loaded or run here."""
    from lexflow.diff import registry
    from lexflow.diff.behaviour import base_codes, signatures

    seed = options.seed
    if seed is None:
        try:
            seed = int(a.config.get("seed", 0))
        except ValueError:
            seed = 0
    base = base_codes(a.latent_dim, options.rows, seed)
    values = _frame_values(a.config)
    try:
        with tempfile.TemporaryDirectory(prefix="lexflow-diff-") as tmp:
            out = []
            for side in (a, b):
                decoder, out_range = registry.load_decoder(side, tmp, options.device)
                out.append(signatures(decoder, base, values, output_range=out_range))
    except LexflowError as exc:
        warnings.append(f"could not re-decode the models ({exc}); latents are matched on stored "
                        f"evidence and explanations only.")
        return None
    return out[0], out[1]
