"""Results and how they are written: explanations.json, report.html, tags, the description section.

Everything here is pure (no I/O, no MLflow): it turns an :class:`ExplainResult` into documents and
strings; :mod:`lexflow.tracking` writes them. Text an explainer wrote is untrusted: it is escaped
in HTML and Markdown and bounded in length in tags.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lexflow import names
from lexflow._version import __version__
from lexflow.coverage import Coverage

LATENT_STATUSES = ("explained", "unclear", "inactive", "failed", "skipped")
SKIPPED = "skipped"  # active, but not among the top_k most active items: measured, not explained


@dataclass(frozen=True)
class LatentResult:
    """The outcome for one latent (one record of explanations.json).

    Attributes:
        index: latent index; label: its zero-padded form used in tags and file names.
        status: explained (certainty >= threshold), unclear (below it), inactive (the images do
            not change; no explainer asked), failed (every answer failed) or skipped (active, but
            not among the ``top_k`` most active; measured, not explained; see lexflow.coverage).
        explanation: the kept answer, or None ("No clear explanation").
        explainable: whether the explanation is reported.
        certainty: in [0, 1] (0 for inactive latents): the answers' agreement (their mean
            pairwise similarity), times the encoder's read-back for a model with an encoder.
        agreement: the answers' mean pairwise similarity alone (None when no explainer was asked).
        readback: how well the model's encoder reads back the value the traversal set, in
            [0, 1] (lexflow.stages.readback); None for a model without an encoder, items that
            are not single latents, or ``readback=off``.
        answers: every sampled answer ("" for failed ones); failures: why they failed.
        evidence: the measured evidence (see lexflow.stages.evidence.Evidence.to_dict).
        image: artifact path of the traversal grid; comparison_image: of the comparison rows.
        strip: artifact path of the small PNG strip (one row, a few frames); animation: of the
            animated traversal (GIF); None when not rendered (see ``render_failures``).
        partner: the latent clamped in the comparison row.
        flags: warnings about the answers, e.g. one naming a property the evidence says did not
            move (grounding); details: what the explainer added (labels, cache hits, ...).
        kind: what the index names: ``latent`` (one latent), ``direction`` (an h-space direction
            of a diffusion model; columns run -direction .. base .. +direction), ``group``
            (latents moved together, the combination bias) or ``attribute`` (a CSVAE label
            direction); members: the latents a group or attribute moves; condition: the
            condition the explanation is about (an edit prompt, an attribute label), if any.
    """

    index: int
    label: str
    status: str
    explanation: str | None
    explainable: bool
    certainty: float
    answers: tuple[str, ...]
    evidence: dict[str, Any]
    image: str
    name: str | None = None
    failures: tuple[str, ...] = ()
    comparison_image: str | None = None
    comparison_evidence: dict[str, Any] | None = None
    partner: int | None = None
    flags: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = "latent"
    members: tuple[int, ...] | None = None
    condition: str | None = None
    strip: str | None = None
    animation: str | None = None
    agreement: float | None = None
    readback: float | None = None


@dataclass(frozen=True)
class ExplainResult:
    """The outcome of one run over a model version."""

    model_uri: str
    model_name: str | None
    model_version: str | None
    run_id: str
    explainer: str
    explainer_is_mllm: bool
    latent_dim: int
    config: dict[str, str]
    latents: tuple[LatentResult, ...]
    output_range: tuple[float, float]
    usage: dict[str, float] = field(default_factory=dict)
    created: str = ""
    lexflow_version: str = __version__
    # What the explained items are and how they were moved (kind, unit, column values, sign
    # convention for directions ...); empty for the default one-latent traversal.
    traversal: dict[str, Any] = field(default_factory=dict)
    # Items left out by top_k (status "skipped"): written under "skipped", not under "latents".
    skipped: tuple[LatentResult, ...] = ()
    # artifact path -> PNG bytes of every grid (traversals and comparisons); not in to_dict, and
    # empty in a result read back with from_dict.
    images: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    # Pictures for people (strips, animations, the certainty chart) that could not be drawn, one
    # line each; the grids and the run are unaffected.
    render_failures: tuple[str, ...] = ()

    @property
    def explainable_fraction(self) -> float:
        """Explainable latents over all ``latent_dim`` latents of the model, not over the subset
        a run chose (``--latents``, ``--top-k``): a latent not explained counts as not explainable."""
        total = max(self.latent_dim, len(self.latents))
        return sum(r.explainable for r in self.latents) / total if total else 0.0

    @property
    def coverage(self) -> Coverage:
        """What the run covered: latents measured / latent_dim and the count of each status."""
        statuses = [r.status for r in self.latents] + [SKIPPED] * len(self.skipped)
        return Coverage.of(self.latent_dim, statuses, self.config)

    @property
    def mean_certainty(self) -> float:
        active = [r.certainty for r in self.latents if r.status != "inactive"]
        return sum(active) / len(active) if active else 0.0

    @property
    def status(self) -> str:
        """complete; partial when some latent's explainer calls all failed; failed when every
        latent the explainer was asked about failed (nothing was explained)."""
        asked = [r for r in self.latents if r.status != "inactive"]
        failed = [r for r in asked if r.status == "failed"]
        if failed and len(failed) == len(asked):
            return names.STATUS_FAILED
        return names.STATUS_PARTIAL if failed else names.STATUS_COMPLETE

    def no_answer_message(self) -> str:
        """Why a run where no latent got an answer failed: the (redacted) provider errors."""
        errors = list(dict.fromkeys(f.split(": ", 1)[-1] for r in self.latents for f in r.failures))
        shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        return (f"No latent got an answer from {self.explainer}: every call failed "
                f"({shown or 'no reason given'}). Check the key, the server and its quota, then "
                "run the same command again.")

    @property
    def active_latents(self) -> int:
        return sum(r.status != "inactive" for r in self.latents)

    @property
    def top_k(self) -> str | None:
        """The top_k option of the run as given, or None when every active item was explained."""
        value = self.config.get("top_k", "all")
        return None if value in ("all", "", None) else str(value)

    def skip_reason(self) -> str:
        return f"not among the {self.config.get('top_k')} most active latents (top_k)"

    def metrics(self) -> dict[str, float]:
        """The run's metrics (names from lexflow.names): the one place they are computed."""
        usage = self.usage
        out = {
            names.METRIC_EXPLAINABLE_FRACTION: self.explainable_fraction,
            names.METRIC_MEAN_CERTAINTY: self.mean_certainty,
            names.METRIC_ACTIVE_LATENTS: float(self.active_latents),
            names.METRIC_CALLS: float(usage.get("calls", 0.0)),
            names.METRIC_INPUT_TOKENS: float(usage.get("input_tokens", 0.0)),
            names.METRIC_OUTPUT_TOKENS: float(usage.get("output_tokens", 0.0)),
            names.METRIC_COST: float(usage.get("cost_usd", 0.0)),
            names.METRIC_IMAGES: float(usage.get("images", 0.0)),
        }
        out.update({names.certainty_metric(r.index, self.latent_dim): r.certainty
                    for r in self.latents})
        if self.top_k is not None:
            out[names.METRIC_SKIPPED_LATENTS] = float(len(self.skipped))
        out.update(self.coverage.metrics())
        return out

    def _skipped_dict(self, r: LatentResult) -> dict[str, Any]:
        return {"index": r.index, "label": r.label, "status": SKIPPED,
                "reason": self.skip_reason(), "evidence": r.evidence, "image": r.image,
                "strip": r.strip, "animation": r.animation}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "explanations.json") -> ExplainResult:
        """Read back what :meth:`to_dict` wrote (schema lexflow.explanations/1): the one reader of
        explanations.json. Fields a file lacks take their defaults; a file of another schema or
        shape fails with :class:`lexflow.errors.ConfigError` naming ``source``."""
        from lexflow.errors import ConfigError

        if not isinstance(doc, Mapping) or doc.get("schema") != names.EXPLANATIONS_SCHEMA:
            schema = doc.get("schema") if isinstance(doc, Mapping) else None
            raise ConfigError(f"{source} is not a lexflow explanations.json (schema {schema!r}; "
                              f"expected {names.EXPLANATIONS_SCHEMA!r}).")
        try:
            model = doc.get("model") or {}
            explainer = doc.get("explainer") or {}
            latent_dim = int(doc.get("latent_dim", len(doc["latents"])))
            latents = tuple(_latent_from_dict(r, latent_dim) for r in doc["latents"])
            return cls(
                model_uri=str(doc.get("model_uri", "")), model_name=model.get("name"),
                model_version=model.get("version"), run_id=str(doc.get("run_id", "")),
                explainer=str(explainer.get("uri", "")),
                explainer_is_mllm=bool(explainer.get("is_mllm", False)), latent_dim=latent_dim,
                config={str(k): str(v) for k, v in (doc.get("config") or {}).items()},
                latents=latents,
                output_range=tuple(float(v) for v in doc.get("output_range") or (0.0, 1.0)),  # type: ignore[arg-type]
                usage={str(k): float(v) for k, v in (doc.get("usage") or {}).items()},
                created=str(doc.get("created", "")),
                lexflow_version=str(doc.get("lexflow_version", "")),
                traversal=dict(doc.get("traversal") or {}),
                skipped=tuple(_latent_from_dict({**r, "explanation": None, "explainable": False,
                                                 "certainty": 0.0, "answers": ()}, latent_dim)
                              for r in doc.get("skipped") or ()),
                render_failures=tuple(str(f) for f in doc.get("render_failures") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: a malformed lexflow explanations.json ({type(exc).__name__}: "
                              f"{exc}).") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": names.EXPLANATIONS_SCHEMA,
            "lexflow_version": self.lexflow_version,
            "created": self.created,
            "model_uri": self.model_uri,
            "model": {"name": self.model_name, "version": self.model_version},
            "run_id": self.run_id,
            "status": self.status,
            "explainer": {"uri": self.explainer, "is_mllm": self.explainer_is_mllm},
            "latent_dim": self.latent_dim,
            "output_range": list(self.output_range),
            "config": self.config,
            "summary": {
                "explainable_fraction": self.explainable_fraction,
                "mean_certainty": self.mean_certainty,
                "active_latents": self.active_latents,
                "explained_latents": len(self.latents),
            },
            "coverage": self.coverage.to_dict(),
            "usage": self.usage,
            "latents": [asdict(r) for r in self.latents],
            **({"traversal": self.traversal} if self.traversal else {}),
            **({"skipped": [self._skipped_dict(r) for r in self.skipped]} if self.skipped else {}),
            **({"render_failures": list(self.render_failures)} if self.render_failures else {}),
        }


_TUPLE_FIELDS = ("answers", "failures", "flags")


def _latent_from_dict(r: Mapping[str, Any], latent_dim: int) -> LatentResult:
    """One record of ``latents`` (or ``skipped``); fields a hand-written file leaves out take
    what lexflow would have written (label and image from the index)."""
    known = {f.name for f in fields(LatentResult)}
    values: dict[str, Any] = {k: v for k, v in r.items() if k in known}
    index = int(values["index"])
    values.setdefault("label", names.latent_label(index, latent_dim))
    values.setdefault("image", names.traversal_path(index, latent_dim))
    values.setdefault("status", "explained" if values.get("explanation") else "unclear")
    values.setdefault("explanation", None)
    values.setdefault("explainable", values["explanation"] is not None)
    values.setdefault("answers", ())
    for key in _TUPLE_FIELDS:
        if key in values:
            values[key] = tuple(values[key] or ())
    if values.get("members") is not None:
        values["members"] = tuple(int(i) for i in values["members"])
    values["index"] = index
    values["certainty"] = float(values.get("certainty", 0.0))
    values.setdefault("evidence", {})
    return LatentResult(**values)


def bounded(text: str, limit: int = names.TAG_VALUE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tag_text(result: LatentResult) -> str:
    return bounded(result.explanation or names.NO_CLEAR_EXPLANATION)


def version_tags(result: ExplainResult) -> dict[str, str]:
    """Every lexflow tag of a complete run, except the status (written last)."""
    d = result.latent_dim
    tags = {
        names.TAG_RUN_ID: result.run_id,
        names.TAG_VERSION: result.lexflow_version,
        names.TAG_EXPLAINER: bounded(result.explainer),
        names.TAG_EXPLAINABLE_FRACTION: f"{result.explainable_fraction:.3f}",
        names.TAG_COVERAGE: result.coverage.tag(),
    }
    for r in result.latents:
        tags[names.latent_tag(r.index, d)] = tag_text(r)
        tags[names.latent_certainty_tag(r.index, d)] = f"{r.certainty:.3f}"
        if r.readback is not None:
            tags[names.latent_readback_tag(r.index, d)] = f"{r.readback:.3f}"
    if result.top_k is not None:
        tags[names.TAG_TOP_K] = result.top_k
        tags[names.TAG_SKIPPED_LATENTS] = ",".join(r.label for r in result.skipped)[
            : names.TAG_VALUE_MAX]
    return tags


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|~])")
# What Markdown renderers turn into links without any Markdown syntax (GFM autolinks, showdown's
# simplifiedAutoLink and ghMentions, as in the MLflow UI): an entity in place of the character
# that triggers them renders the same but matches no autolink pattern.
_AUTOLINK = ((re.compile(r"://"), "&#58;//"), (re.compile(r"(?i)\b(www)\."), r"\1&#46;"),
             (re.compile(r"@"), "&#64;"), (re.compile(r"(?i)\b(mailto|javascript|data):"), r"\1&#58;"))


def md_escape(text: str, limit: int = 500) -> str:
    """Untrusted text made inert in Markdown (and the HTML Markdown may contain), one line."""
    text = " ".join(text.split())
    text = bounded(text, limit)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # Raw HTML in Markdown: make tags inert (entities render as the characters themselves).
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for pattern, inert in _AUTOLINK:
        text = pattern.sub(inert, text)
    return text


DESCRIPTION_MAX = 5000  # characters of a model-version description a PostgreSQL store keeps
DESCRIPTION_CELL = 200  # characters of one explanation in the description table (tags hold more)
_GRID_CELL = re.compile(r" \[grid\]\([^)]*\) \|$")


DESCRIPTION_STRIPS = 16  # latents with a strip in the description: a 16-row table stays readable


def artifact_link(path: str, run_id: str) -> str:
    """The registry UI's relative URL of a run artifact (the page renders it inline)."""
    return f"get-artifact?path={path.replace('/', '%2F')}&run_uuid={run_id}"


def strip_latents(result: ExplainResult, limit: int = DESCRIPTION_STRIPS) -> list[LatentResult]:
    """The latents whose strip the description shows: those with a strip, the ``limit`` most
    active (measured total change), in table order."""
    drawn = [r for r in result.latents if r.strip]
    ranked = sorted(drawn, key=lambda r: (-float(r.evidence.get("total_change", 0.0)), r.index))
    chosen = {r.index for r in ranked[:limit]}
    return [r for r in result.latents if r.index in chosen]


def strips_note(run_id: str) -> str:
    """The line saying where the strips the description leaves out are."""
    return (f"Not every latent's strip is shown here: all of them are under `{names.STRIP_DIR}/`, "
            f"with each latent's animation in `{names.REPORT_FILE}`, of run `{run_id}`.")


_STRIP_IMAGE = re.compile(r"!\[[^\]]*\]\(get-artifact\?path="
                          + re.escape(names.STRIP_DIR.replace("/", "%2F")) + r"%2F[^)]*\) ")
_RUN_UUID = re.compile(r"run_uuid=([0-9A-Za-z]+)")
_RANK = re.compile(r"!\[latent [0-9]+, activity rank ([0-9]+)\]")


def drop_strips(section: str, room: int) -> str:
    """``section`` with strips taken out, the least active latent's first, until it fits in ``room``
    characters (or none is left); the line saying where every strip is comes in with the first.
    The first step of fitting the section beside the user's text: pictures go before words."""
    if len(section) <= room:
        return section
    lines = section.split("\n")
    rows = [k for k, line in enumerate(lines) if _STRIP_IMAGE.search(line)]
    found = _RUN_UUID.search(lines[rows[0]]) if rows else None
    if not rows or not found:
        return section
    note = strips_note(found.group(1))
    if note not in lines:
        end = rows[-1] + 1
        while end < len(lines) and lines[end].startswith("| "):
            end += 1
        lines[end:end] = ["", note]

    def rank(k: int) -> int:
        found = _RANK.search(lines[k])
        return int(found.group(1)) if found else 0

    for k in sorted(rows, key=rank, reverse=True):
        lines[k] = _STRIP_IMAGE.sub("", lines[k], count=1)
        if len("\n".join(lines)) <= room:
            break
    return "\n".join(lines)


def description_section(result: ExplainResult, strips: int = DESCRIPTION_STRIPS) -> str:
    """The lexflow-owned part of the model-version description (between the markers): a table
    with a small strip (one traversal row, drawn at its own size) of the ``strips`` most active
    latents beside their explanations."""
    lines = [
        names.DESCRIPTION_BEGIN,
        f"### Latent explanations (lexflow {result.lexflow_version})",
        "",
        f"Run `{result.run_id}` · explainer `{md_escape(result.explainer, 200)}` · "
        f"{result.explainable_fraction:.0%} of {result.latent_dim} latents explainable · "
        f"mean certainty {result.mean_certainty:.2f}",
        "",
        f"Coverage: {md_escape(result.coverage.describe(), 300)}",
        "",
        "| latent | explanation | certainty | grid |",
        "|---|---|---|---|",
    ]
    ranked = strip_latents(result, strips)
    rank = {r.index: k for k, r in enumerate(sorted(
        ranked, key=lambda r: (-float(r.evidence.get("total_change", 0.0)), r.index)), 1)}
    with_strip = set(rank)
    for r in result.latents:
        text = (md_escape(r.explanation, DESCRIPTION_CELL) if r.explanation
                else f"*{names.NO_CLEAR_EXPLANATION}*")
        if r.status == "inactive":
            text += " (inactive)"
        strip = (f"![latent {r.label}, activity rank {rank.get(r.index)}]"
                 f"({artifact_link(r.strip, result.run_id)}) "
                 if r.strip and r.index in with_strip else "")
        lines.append(f"| {r.label} | {text} | {r.certainty:.2f} | "
                     f"{strip}[grid]({artifact_link(r.image, result.run_id)}) |")
    if len(with_strip) < sum(1 for r in result.latents if r.strip):
        lines.append(f"\n{strips_note(result.run_id)}")
    if result.skipped:
        labels = ", ".join(r.label for r in result.skipped)
        lines.append(f"\nSkipped (not among the {result.config.get('top_k')} most active latents, "
                     f"not explained, counted as not explainable in the fraction): {labels}")
    lines.append(names.DESCRIPTION_END)
    return "\n".join(lines)


def status_section(message: str) -> str:
    return "\n".join([names.DESCRIPTION_BEGIN, md_escape(message, 2000), names.DESCRIPTION_END])


def _pointer(hidden: int) -> str:
    return (f"{hidden} more latents are not listed here (a model-version description holds at "
            f"most {DESCRIPTION_MAX:,} characters): every one is in `{names.REPORT_FILE}` of the "
            f"run above and in the `{names.TAG_LATENT_PREFIX}*` tags.")


def fit_section(section: str, room: int) -> str:
    """``section`` shortened to at most ``room`` characters, or "" when not even its head fits.

    Steps, until it fits: drop the strips, the least active latent's first, with a line saying
    where they all are (:func:`drop_strips`); drop the grid links; bound every other line; list
    fewer latents (explained ones first, in order) with a line pointing to the report; the head
    and the pointer alone. The markers are always kept, so a later run finds and replaces the
    section."""
    if len(section) <= room:
        return section
    section = drop_strips(section, room)
    if len(section) <= room:
        return section
    lines = section.split("\n")
    if len(lines) < 3 or lines[0] != names.DESCRIPTION_BEGIN or lines[-1] != names.DESCRIPTION_END:
        return bounded(section, room) if room > 0 else ""
    body = lines[1:-1]
    sep = next((k for k, line in enumerate(body) if line.startswith("|---")), None)
    if sep is None:
        head, rows, tail = body, [], []
    else:
        end = sep + 1
        while end < len(body) and body[end].startswith("| "):
            end += 1
        head, rows, tail = body[: sep + 1], body[sep + 1 : end], body[end:]
        head = [line.replace(" | grid |", " |").replace("|---|---|---|---|", "|---|---|---|")
                for line in head]
        rows = [_GRID_CELL.sub("", row) for row in rows]
    tail = [bounded(line, 300) for line in tail]

    def build(kept: list[str], hidden: int) -> str:
        pointer = ["", _pointer(hidden)] if hidden else []
        return "\n".join([names.DESCRIPTION_BEGIN, *head, *kept, *pointer, *tail,
                          names.DESCRIPTION_END])

    if len(build(rows, 0)) <= room:
        return build(rows, 0)
    order = sorted(range(len(rows)), key=lambda k: (names.NO_CLEAR_EXPLANATION in rows[k], k))
    chosen: set[int] = set()
    for k in order:
        trial = chosen | {k}
        if len(build([rows[j] for j in sorted(trial)], len(rows) - len(trial))) > room:
            break
        chosen = trial
    out = build([rows[j] for j in sorted(chosen)], len(rows) - len(chosen))
    if len(out) <= room:
        return out
    title = [line for line in head if not line.startswith("|")]
    out = "\n".join([names.DESCRIPTION_BEGIN, *title, _pointer(len(rows)), names.DESCRIPTION_END])
    return out if len(out) <= room else ""


def merge_description(existing: str | None, section: str, limit: int = DESCRIPTION_MAX) -> str:
    """Replace the owned section of ``existing`` (or append it); the user's text is kept as is.

    The result holds at most ``limit`` characters when the user's text does: lexflow's section is
    shortened (:func:`fit_section`) to the room left beside it, and left out when none is left."""
    existing = existing or ""
    begin = existing.find(names.DESCRIPTION_BEGIN)
    end = existing.find(names.DESCRIPTION_END, begin + 1) if begin >= 0 else -1
    if begin >= 0 and end >= 0:
        before, after = existing[:begin], existing[end + len(names.DESCRIPTION_END) :]
        return before + fit_section(section, limit - len(before) - len(after)) + after
    if not existing.strip():
        return fit_section(section, limit)
    user = existing.rstrip("\n")
    fitted = fit_section(section, limit - len(user) - 2)
    return user + "\n\n" + fitted if fitted else existing


_REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}.inactive{color:#888}.unclear{color:#a60}.failed{color:#b00}
img{image-rendering:pixelated;max-width:100%}img.anim{margin-left:1em;vertical-align:top}
section{margin:2em 0}code{background:#f4f4f4}
"""


_ITEM_TITLE = {"latent": "Latent", "direction": "Direction", "group": "Group",
               "attribute": "Attribute"}


def _item_note(r: LatentResult, traversal: dict[str, Any]) -> str:
    """One escaped line saying what a non-latent item moves and how the columns read."""
    e = html.escape
    unit = e(str(traversal.get("unit", "")))
    if r.kind == "direction":
        text = (f"Direction {e(r.label)} of h-space: columns run from -direction through the base "
                f"image to +direction ({unit}, signed).")
    else:
        text = (f"Moves latents {e(', '.join(map(str, r.members or ())))} together; columns in "
                f"{unit}, increasing.")
    return text + (f" Condition: <code>{e(r.condition)}</code>." if r.condition else "")


def _data_uri(path: str, data: bytes) -> str:
    mime = "image/gif" if path.endswith(".gif") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def report_html(result: ExplainResult, images: dict[str, bytes] | None = None) -> str:
    """A self-contained HTML report; every explainer-written string is escaped. ``images``:
    artifact path -> PNG (default: the result's own)."""
    e = html.escape
    images = result.images if images is None else images
    d = result.to_dict()
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>lexflow: {e(result.model_uri)}</title><style>{_REPORT_CSS}</style></head><body>",
        f"<h1>Latent explanations of <code>{e(result.model_uri)}</code></h1>",
        f"<p>Explainer <code>{e(result.explainer)}</code>"
        + ("" if result.explainer_is_mllm else " (a measurement explainer, not an MLLM)")
        + f" · run <code>{e(result.run_id)}</code> · lexflow {e(result.lexflow_version)}"
        f" · {e(result.created)}</p>",
        f"<p><b>{d['summary']['explainable_fraction']:.0%}</b> of {result.latent_dim} latents "
        f"explainable · mean certainty <b>{result.mean_certainty:.2f}</b> · "
        f"{result.active_latents} active · coverage: {e(result.coverage.describe())}</p>",
    ]
    chart = images.get(names.CERTAINTY_CHART)
    if chart:
        out.append(f"<p><img alt='certainty per latent against the threshold' "
                   f"src='{_data_uri(names.CERTAINTY_CHART, chart)}'></p>")
    out.append("<table><tr><th>latent</th><th>explanation</th><th>certainty</th><th>status</th>"
               "</tr>")
    for r in result.latents:
        text = e(r.explanation) if r.explanation else f"<i>{e(names.NO_CLEAR_EXPLANATION)}</i>"
        out.append(
            f"<tr class='{e(r.status)}'><td><a href='#latent-{e(r.label)}'>{e(r.label)}</a></td>"
            f"<td>{text}</td><td>{r.certainty:.2f}</td><td>{e(r.status)}</td></tr>"
        )
    out.append("</table>")
    for r in result.latents:
        out.append(f"<section id='latent-{e(r.label)}'><h2>{e(_ITEM_TITLE.get(r.kind, 'Latent'))} "
                   f"{e(r.label)}"
                   + (f" ({e(r.name)})" if r.name else "") + "</h2>")
        if r.kind != "latent":
            out.append(f"<p>{_item_note(r, result.traversal)}</p>")
        img = images.get(r.image)
        anim = images.get(r.animation or "")
        if img:
            out.append(f"<img alt='traversal of latent {e(r.label)}' "
                       f"src='{_data_uri(r.image, img)}'>")
        if anim and r.animation:
            out.append(f"<img class='anim' alt='animated traversal of latent {e(r.label)}' "
                       f"src='{_data_uri(r.animation, anim)}'>")
        cmp_img = images.get(r.comparison_image or "")
        if cmp_img:
            out.append(f"<p>Comparison: the first row again with latent {r.partner} clamped.</p>"
                       f"<img alt='comparison' src='{_data_uri('x.png', cmp_img)}'>")
        ev = r.evidence
        moved = [(k, v) for k, v in ev.get("properties", {}).items() if v["score"] >= 1.0]
        parts = (f" (answers' agreement {r.agreement:.2f} × encoder read-back {r.readback:.2f})"
                 if r.readback is not None and r.agreement is not None else "")
        out.append(f"<p>Status <b>{e(r.status)}</b>, certainty {r.certainty:.2f}{parts}. Pixel change "
                   f"{ev.get('total_change', 0):.3f}, mostly in the {e(str(ev.get('region', '')))}.</p>")
        if moved:
            out.append("<p>Measured: " + "; ".join(
                f"{e(k)} {v['start']:.3g} → {v['end']:.3g} {e(v['unit'])} (score {v['score']:.1f})"
                for k, v in moved) + "</p>")
        if r.answers:
            out.append("<details><summary>All answers</summary><ol>"
                       + "".join(f"<li>{e(a) if a else '<i>(no answer)</i>'}</li>" for a in r.answers)
                       + "</ol></details>")
        if r.failures:
            out.append("<p class='failed'>Failures: " + "; ".join(e(f) for f in r.failures) + "</p>")
        if r.flags:
            out.append("<p class='unclear'>Flags: " + "; ".join(e(f) for f in r.flags) + "</p>")
        out.append("</section>")
    skipped = ""
    if result.skipped:
        labels = ", ".join(r.label for r in result.skipped)
        skipped = (f"<section id='skipped'><h2>Skipped latents</h2><p>Not among the "
                   f"{e(str(result.config.get('top_k')))} most active latents (top_k): "
                   f"{e(labels)}. They were measured but not explained, and count as not "
                   f"explainable in the explainable fraction.</p></section>")
    if result.render_failures:
        skipped += ("<section id='render-failures'><h2>Pictures not drawn</h2><ul>"
                    + "".join(f"<li>{e(f)}</li>" for f in result.render_failures)
                    + "</ul></section>")
    out.append(skipped + "</body></html>")
    return "\n".join(out)
