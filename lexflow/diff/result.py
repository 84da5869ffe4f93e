"""The outcome of a diff and the plain documents made from it: the JSON artifact, the table,
the version tags and the description line (pure; :mod:`lexflow.diff.registry` writes them).

Explainer-written text is untrusted: the table strips control characters, the tags are bounded
to 5,000 characters, the description line carries counts and latent labels only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lexflow import names
from lexflow.diff.match import STATUS_TITLES, STATUSES, Match, Side
from lexflow.diff.similarity import WEIGHTS
from lexflow.record import bounded

# MLflow tag keys: alphanumerics, underscores, dashes, periods, spaces and slashes.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
DESCRIPTION_MAX = 5000  # characters of a description a PostgreSQL-backed store keeps


def against_key(side: Side) -> str:
    """How the candidate's tags and artifact name the other version: its alias (``champion``),
    else ``v<version>``, else the logged model id (``m-...``); safe in a tag key and a file name."""
    if side.alias:
        raw = side.alias
    elif side.version is not None:
        raw = f"v{side.version}"
    else:
        raw = side.model_uri.removeprefix("models:/")
    return _KEY_UNSAFE.sub("_", raw)[:100] or "other"


def plain(text: str | None, limit: int = 300) -> str:
    """Untrusted text for a terminal: one line, no control characters, bounded."""
    if not text:
        return names.NO_CLEAR_EXPLANATION
    return bounded(" ".join(_CONTROL.sub(" ", text).split()), limit)


@dataclass(frozen=True)
class DiffResult:
    """The diff of version A (the reference, e.g. the champion) and B (the candidate).

    Attributes:
        a, b: the two versions as read.
        matches: every latent of both in one entry (see :mod:`lexflow.diff.match`).
        components: the similarity components this diff could use (``behaviour`` needs both
            decoders and equal latent_dim).
        same_threshold, match_threshold: the status thresholds on the combined similarity.
        warnings: settings that differ between the two explanations, and what it means.
        created: ISO 8601 UTC time.
    """

    a: Side
    b: Side
    matches: tuple[Match, ...]
    components: tuple[str, ...]
    same_threshold: float
    match_threshold: float
    warnings: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def against(self) -> str:
        return against_key(self.a)

    def of(self, status: str) -> tuple[Match, ...]:
        return tuple(m for m in self.matches if m.status == status)

    def counts(self) -> dict[str, int]:
        return {s: len(self.of(s)) for s in STATUSES}

    def summary(self) -> str:
        """``1 changed, 1 lost`` (what moved), or ``no meaning changed (5 same)``."""
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in ("changed", "lost", "new") if c[s]]
        return ", ".join(parts) if parts else f"no meaning changed ({c['same']} same)"

    def latents_of(self, status: str) -> list[str]:
        """Labels of the latents concerned: ``03`` (A's index; B's for new), ``03->05`` for a
        pair whose index moved."""
        out = []
        for m in self.of(status):
            la, lb = self.a.label(m.a), self.b.label(m.b)
            if la is not None and lb is not None:
                out.append(la if m.a == m.b else f"{la}->{lb}")
            else:
                out.append(la if la is not None else f"B{lb}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": names.DIFF_SCHEMA,
            "created": self.created,
            "a": self.a.describe(),
            "b": self.b.describe(),
            "against": self.against,
            "similarity": {"components": list(self.components),
                           "weights": {k: v for k, v in WEIGHTS.items() if k in self.components},
                           "same_threshold": self.same_threshold,
                           "match_threshold": self.match_threshold},
            "counts": self.counts(),
            "summary": self.summary(),
            "warnings": list(self.warnings),
            "matches": [m.to_dict() for m in self.matches],
        }

    def table(self) -> str:
        """A readable table: one line per entry, A's side then B's."""
        head = (f"A {self.a.uri} ({self.a.model_uri}, run {self.a.run_id})\n"
                f"B {self.b.uri} ({self.b.model_uri}, run {self.b.run_id})\n"
                f"similarity from {', '.join(self.components)}; same >= {self.same_threshold}, "
                f"match >= {self.match_threshold}\n")
        lines = [head, f"{'status':<24}{'A':>5}{'B':>5}  {'sim':>5}  {'cert A':>6}  {'cert B':>6}  "
                       "explanation A -> explanation B"]
        for m in self.matches:
            la = self.a.label(m.a) or "-"
            lb = self.b.label(m.b) or "-"
            if m.nearest is not None:
                lb = f"({self.b.label(m.nearest)})" if m.status == "lost" else lb
                la = f"({self.a.label(m.nearest)})" if m.status == "new" else la
            sim = "-" if m.similarity is None else f"{m.similarity:.2f}"
            ca = "-" if m.certainty_a is None else f"{m.certainty_a:.2f}"
            cb = "-" if m.certainty_b is None else f"{m.certainty_b:.2f}"
            title = STATUS_TITLES[m.status] + (" (reversed)" if m.reversed and m.status in
                                               ("same", "changed") else "")
            text = f"{plain(m.explanation_a, 80)} -> {plain(m.explanation_b, 80)}"
            lines.append(f"{title:<24}{la:>5}{lb:>5}  {sim:>5}  {ca:>6}  {cb:>6}  {text}")
        lines.append("")
        lines.append(f"since {self.against}: {self.summary()}")
        return "\n".join(lines)

    def version_tags(self) -> dict[str, str]:
        """``lexflow.diff.<against>.*`` tags for the candidate version (values <= 5,000 chars)."""
        c = self.counts()
        key = self.against
        concerned = "; ".join(f"{s}: {', '.join(self.latents_of(s))}"
                              for s in ("changed", "lost", "new") if c[s])
        tags = {
            names.diff_tag(key, "against"): bounded(self.a.model_uri),
            names.diff_tag(key, "run_id"): self.a.run_id,
            names.diff_tag(key, "summary"): bounded(self.summary()),
            names.diff_tag(key, "latents"): bounded(concerned or "none"),
            names.diff_tag(key, "checked_at"): self.created,
        }
        tags.update({names.diff_tag(key, s): str(c[s]) for s in STATUSES})
        return tags

    def description_line(self) -> str:
        """``since champion: 1 changed, 1 lost`` (no explainer text, so nothing to escape but the
        key, which is already [A-Za-z0-9_-])."""
        return f"since {self.against}: {self.summary()}"


def merge_line(section_or_description: str | None, line: str, against: str) -> str | None:
    """Put ``line`` into the owned description section, replacing an earlier line about the same
    ``against``; None when the description has no owned section (the version was never
    explained, so there is nothing to add the line to) or would grow past DESCRIPTION_MAX."""
    text = section_or_description or ""
    begin = text.find(names.DESCRIPTION_BEGIN)
    end = text.find(names.DESCRIPTION_END, begin + 1) if begin >= 0 else -1
    if begin < 0 or end < 0:
        return None
    inside = text[begin:end].split("\n")
    prefix = f"since {against}: "
    inside = [ln for ln in inside if not ln.startswith(prefix)]
    body = "\n".join(inside).rstrip("\n") + "\n\n" + line + "\n"
    merged = text[:begin] + body + text[end:]
    return merged if len(merged) <= DESCRIPTION_MAX else None

