"""The exceptions lexflow raises, all rooted at :class:`LexflowError`.

::

    LexflowError                 anything lexflow reports to a user (CLI exit 2 or 1)
    ├── ConfigError              an option or argument is out of range or malformed (exit 2)
    ├── ModelNotFoundError       the model URI names no registered model, version or alias (exit 2)
    ├── ModelContractError       the model loads but breaks the decoder contract (exit 2)
    ├── MissingDependencyError   an optional dependency is not installed (exit 2)
    ├── TrackingError            the MLflow tracking server / registry cannot be used (exit 1)
    ├── DecodeError              the decoder failed or returned bad values while decoding (exit 1)
    ├── ExplainerError           an explainer could not be built or failed (exit 1)
    └── CheckpointError          a shipped/cached model checkpoint is stale or unreadable (exit 1)

Messages say what was received and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LexflowError(Exception):
    """Base class of every error lexflow raises on purpose."""

    exit_code = 1


class ConfigError(LexflowError, ValueError):
    """An option or argument is malformed or out of range."""

    exit_code = 2


class ModelNotFoundError(LexflowError, LookupError):
    """A model URI that names no registered model, version, alias or logged model."""

    exit_code = 2


class ModelContractError(LexflowError, TypeError):
    """A model that loads but does not satisfy the decoder contract in the README."""

    exit_code = 2


class MissingDependencyError(LexflowError, ImportError):
    """An optional dependency needed for this model or explainer is not installed."""

    exit_code = 2


class TrackingError(LexflowError):
    """The MLflow tracking server or model registry could not be reached or used."""


class DecodeError(LexflowError):
    """The decoder raised, or returned the wrong shape, NaN or Inf."""


class ExplainerError(LexflowError):
    """An explainer could not be created or failed to answer."""


class CheckpointError(LexflowError):
    """A checkpoint was trained with other settings or model code, or does not load: retrain it."""


def brief(value: object, limit: int = 80) -> str:
    """A repr of ``value`` bounded to about ``limit`` characters, for messages: a value read from
    a file or an option may be huge, and a message must stay one readable line."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxtuple, r.maxdict, r.maxset = limit, limit, 6, 6, 4, 6
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "...'"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean 'x'?' suffix when ``name`` is close to one of ``choices``, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def require(module: str, *, extra: str, purpose: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency, or fail once with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'lexflow[{extra}]'"
        ) from exc
