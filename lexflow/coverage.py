"""Coverage: how much of a model's latent space an explanation run looked at (pure).

A run over a subset (``--latents 0,3``, ``--top-k 2``) must not read like a run over every latent:
its coverage travels with it in explanations.json (``coverage``), as run metrics and as the
``lexflow.coverage`` version tag, and the gate (``thresholds.min_coverage``) and
``explain-registry`` judge it.

Counts, over the ``latent_dim`` items of the model (latents, or the groups/directions a run moved):
explained, unclear, inactive and failed latents were measured and judged; skipped latents (active,
not among the ``top_k`` most active) were measured but not explained; the rest were not measured
at all (left out by ``--latents``). Skipped latents count as covered only when a policy allows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lexflow import names

COUNTED = ("explained", "unclear", "inactive", "failed", "skipped")
_TAG = re.compile(
    r"^measured (?P<measured>\d+)/(?P<latent_dim>\d+): (?P<explained>\d+) explained, "
    r"(?P<unclear>\d+) unclear, (?P<inactive>\d+) inactive, (?P<failed>\d+) failed, "
    r"(?P<skipped>\d+) skipped(?:; subset (?P<subset>.*))?$")


@dataclass(frozen=True)
class Coverage:
    """What one run covered.

    Attributes:
        latent_dim: items the model has (d).
        explained, unclear, inactive, failed, skipped: latents with that status (see
            lexflow.record.LatentResult.status; skipped: measured, not explained, ``top_k``).
        subset: how the run chose a subset, e.g. ``latents=0,3`` or ``top_k=2``; None: every
            latent was asked for.
    """

    latent_dim: int
    explained: int = 0
    unclear: int = 0
    inactive: int = 0
    failed: int = 0
    skipped: int = 0
    subset: str | None = None

    @property
    def measured(self) -> int:
        return self.explained + self.unclear + self.inactive + self.failed + self.skipped

    @property
    def not_measured(self) -> int:
        return max(self.latent_dim - self.measured, 0)

    def fraction(self, *, count_skipped: bool = False) -> float:
        """Latents covered / latent_dim; skipped latents count only with ``count_skipped``."""
        if self.latent_dim <= 0:
            return 0.0
        covered = self.measured - (0 if count_skipped else self.skipped)
        return covered / self.latent_dim

    @property
    def measured_fraction(self) -> float:
        """Latents measured / latent_dim (skipped ones were measured)."""
        return self.fraction(count_skipped=True)

    @classmethod
    def of(cls, latent_dim: int, statuses: Iterable[str], config: Mapping[str, Any]) -> Coverage:
        """From the statuses of a run's records and its options (``latents``, ``top_k``)."""
        counts = dict.fromkeys(COUNTED, 0)
        for s in statuses:
            if s in counts:
                counts[s] += 1
        return cls(latent_dim, subset=subset_of(config), **counts)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Coverage:
        """From explanations.json, counted from its records (never from a stored summary, so an
        edited ``coverage`` block cannot make a subset run look complete)."""
        records = [r for r in (doc.get("latents") or []) if isinstance(r, Mapping)]
        skipped = [r for r in (doc.get("skipped") or []) if isinstance(r, Mapping)]
        statuses = [str(r.get("status")) for r in records] + ["skipped"] * len(skipped)
        try:
            d = int(doc.get("latent_dim") or 0)
        except (TypeError, ValueError):
            d = 0
        indices = {r.get("index") for r in records + skipped}
        return cls.of(max(d, len(indices)), statuses, doc.get("config") or {})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measured": self.measured, "not_measured": self.not_measured,
                "measured_fraction": self.measured_fraction,
                "covered_fraction": self.fraction(count_skipped=False)}

    def metrics(self) -> dict[str, float]:
        return {
            names.METRIC_COVERAGE: self.measured_fraction,
            names.METRIC_LATENTS_MEASURED: float(self.measured),
            names.METRIC_LATENTS_EXPLAINED: float(self.explained),
            names.METRIC_LATENTS_SKIPPED: float(self.skipped),
            names.METRIC_LATENTS_INACTIVE: float(self.inactive),
            names.METRIC_LATENTS_FAILED: float(self.failed),
        }

    def tag(self) -> str:
        """The ``lexflow.coverage`` value: ``measured 8/8: 1 explained, 0 unclear, 0 inactive,
        0 failed, 7 skipped; subset top_k=1`` (read back by :meth:`from_tag`)."""
        text = (f"measured {self.measured}/{self.latent_dim}: {self.explained} explained, "
                f"{self.unclear} unclear, {self.inactive} inactive, {self.failed} failed, "
                f"{self.skipped} skipped")
        return text + (f"; subset {self.subset}" if self.subset else "")

    @classmethod
    def from_tag(cls, value: str | None) -> Coverage | None:
        """The coverage a ``lexflow.coverage`` tag states, or None when it is absent or malformed."""
        m = _TAG.match((value or "").strip())
        if not m:
            return None
        counts = {k: int(m.group(k)) for k in ("latent_dim", *COUNTED)}
        c = cls(subset=m.group("subset") or None, **counts)
        return c if c.measured == int(m.group("measured")) else None

    def describe(self) -> str:
        """One line for people: ``1 of 8 latents measured (subset latents=0)``."""
        parts = [f"{self.measured} of {self.latent_dim} latents measured"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (not explained)")
        if self.subset:
            parts.append(f"subset {self.subset}")
        return ", ".join(parts)


def subset_of(config: Mapping[str, Any]) -> str | None:
    """``latents=0,3`` / ``top_k=2`` / both, from a run's options (params as strings)."""
    parts = []
    latents = str(config.get("latents", "all") or "all")
    if latents != "all":
        parts.append(f"latents={latents}")
    top_k = str(config.get("top_k", "all") or "all")
    if top_k not in ("all", "0", "None"):
        parts.append(f"top_k={top_k}")
    return ", ".join(parts) or None
