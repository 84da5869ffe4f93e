"""``lexflow plugins``: every explainer, adapter and bias lexflow can use, with the installed
distribution that provides each, as ``llm plugins`` does. Entry points are loaded to check them;
a third-party plugin that fails to load is listed with its error instead of breaking the listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any

from lexflow.plugins import ADAPTER_GROUP, BUILTIN, EXPLAINER_GROUP, Ref

BUILTIN_DISTRIBUTION = "lexflow"
KINDS = ((EXPLAINER_GROUP, "explainer"), (ADAPTER_GROUP, "adapter"))


@dataclass(frozen=True)
class Plugin:
    """One installed explainer, adapter or bias, for ``lexflow plugins``.

    Attributes:
        kind: ``explainer``, ``adapter`` or ``bias``; name: what a user types (URI scheme,
            flavor, ``--bias``).
        target: ``module:attribute`` it loads ("" for a bias).
        distribution, version: the installed package that provides it (``lexflow`` for a
            built-in); builtin: whether lexflow itself ships it.
        error: why it fails to load (one line, control characters removed), or None when it
            loads; a third-party entry point named like a built-in is listed as not used.
    """

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    builtin: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(text: str, limit: int = 300) -> str:
    """Third-party text (names, errors) made one printable line: no control, format or bidi
    characters reach the terminal or the JSON."""
    from lexflow.explainers.judge_prompts import printable

    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_error(entry: Any) -> str | None:
    """None when ``entry`` loads; else the exception in one line (a broken third-party plugin must
    not break the listing, so every exception counts)."""
    try:
        entry.load()
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin's import too
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _clean(f"{type(exc).__name__}: {exc}")
    return None


def _lexflow_version() -> str:
    from lexflow._version import __version__

    return __version__


def installed_plugins() -> list[Plugin]:
    """Every explainer, adapter and bias lexflow can use, with the distribution providing each;
    entry points are loaded to check them, and one that fails is listed with its error."""
    out: list[Plugin] = []
    version = _lexflow_version()
    for group, kind in KINDS:
        builtin = BUILTIN.get(group, {})
        for name, value in sorted(builtin.items()):
            out.append(Plugin(kind, name, value, BUILTIN_DISTRIBUTION, version, True,
                              _load_error(Ref(name, value))))
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            dist = getattr(ep, "dist", None)
            dist_name = _clean(str(getattr(dist, "name", None) or "unknown"), 100)
            dist_version = _clean(str(getattr(dist, "version", None) or ""), 50)
            error = (f"not used: lexflow's built-in {kind} {name!r} has this name"
                     if (name := ep.name) in builtin else _load_error(ep))
            out.append(Plugin(kind, _clean(ep.name, 100), _clean(ep.value, 200), dist_name,
                              dist_version, False, error))
    from lexflow.explainers.prompts import available_biases

    out.extend(Plugin("bias", name, "", BUILTIN_DISTRIBUTION, version, True)
               for name in available_biases())
    return out
