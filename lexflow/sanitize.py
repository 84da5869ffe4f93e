"""Provider text is hostile: every string an explainer returns is cleaned here before it is parsed,
cached, logged or written anywhere.

Two steps, in this order (stripping first, so a control character inside a key cannot hide it):

1. :func:`strip_controls` removes C0 and C1 control characters (NUL, ESC and the terminal escape
   sequences they start, ...), bidirectional overrides and isolates (which can make a tag read
   backwards), zero-width characters (which can split a key so it is not recognised) and Unicode
   tag characters (invisible text). Tab and newline stay; carriage returns and the Unicode
   line/paragraph separators become newlines.
2. :func:`redact` replaces every secret with ``***``: the explainer's own key at any length, and
   the value of every environment variable whose name says it is a secret (``*KEY*``,
   ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``) when it is 8 characters or longer.
   A key of 4 characters or more is replaced wherever it occurs; a shorter one (a placeholder like
   ``x`` that local servers accept) wherever it stands alone as a word, so it cannot eat the
   letters of ordinary words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_SECRET = 8  # shorter values of secret-named variables are not treated as secrets
_MIN_SUBSTRING_SECRET = 4  # shorter keys are redacted as whole words only

_DROP = (
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 (tab, LF, CR kept here), DEL, C1
    "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"  # ALM, zero-width, marks, bidi
    "\U000e0000-\U000e007f"  # tag characters
)
_CONTROLS = re.compile(f"[{_DROP}]")
_NEWLINES = re.compile("\r\n?|[\u2028\u2029\x85]")


def strip_controls(text: str) -> str:
    """``text`` without control, bidi-override, zero-width or tag characters (tab/newline kept)."""
    return _CONTROLS.sub("", _NEWLINES.sub("\n", text))


def env_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of the environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    return tuple(v for k, v in env.items()
                 if _SECRET_NAME.search(k) and len(v.strip()) >= _MIN_ENV_SECRET)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= _MIN_SUBSTRING_SECRET:
            text = text.replace(secret, REDACTED)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, text)
    return text


def clean(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """Provider text made safe to parse, store and show: controls stripped, secrets redacted.
    The environment's secrets are always included."""
    if text is None:
        return None
    return redact(strip_controls(str(text)), (*secrets, *env_secrets()))


def clean_value(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """:func:`clean` applied to every string inside lists, tuples and dicts (keys too)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return clean(value, secrets)
    if isinstance(value, Mapping):
        return {clean_value(k, secrets): clean_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clean_value(v, secrets) for v in value)
    return value


def clean_response(response: Any, secrets: Iterable[str | None] = ()) -> Any:
    """An :class:`~lexflow.explainers.base.ExplainResponse` from any explainer (plugins too) with
    its answers, failures and details cleaned; the MLLM base already cleaned its own."""
    from dataclasses import replace

    secrets = tuple(secrets)
    return replace(response,
                   answers=tuple(clean(a, secrets) or "" for a in response.answers),
                   failures=tuple(clean(f, secrets) or "" for f in response.failures),
                   details=clean_value(dict(response.details), secrets))
