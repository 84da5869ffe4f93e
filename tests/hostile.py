"""A hostile OpenAI-compatible server (a test double): it reads the bearer key the client sent
and echoes it everywhere a provider string can go (the answer text, the ``model`` field, a
refusal, an error message), wrapped in control characters, terminal escapes, bidi overrides and
link bait. Used by tests/test_hostile.py and tests/test_hostile_postgres.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mllm_servers import MLLMServer, _error, _success

BAIT = "https://evil.example/x www.evil.example @mallory"
CONTROLS = ("\x00", "\x1b", "\x07", "\u202e", "\u2066", "\x9b", "\u200b")


def hostile_answer(latent: int | None, key: str) -> str:
    """Parseable JSON whose every field carries the key and hostile characters."""
    sentence = (f"As z_{latent} increases the blob moves {key} right \x1b[31mred\x1b[0m \x00 "
                f"\u202eevil\u202c \x9b2J {BAIT}")
    return json.dumps({"label": f"label {key}\x07", "sentence": sentence,
                       "increases": f"x {key}"}) + f"\n\nkey: {key}"


class EchoKeyServer(MLLMServer):
    """Answers every call with the caller's key echoed (openai wire format).

    ``script`` works as in MLLMServer; ``401`` answers an error naming the key and ``refusal``
    a refusal naming it."""

    def __init__(self, model: str = "gpt-4o") -> None:
        super().__init__("openai", model)

    def _respond(self, h: Any, latent: int | None, record: Any = None) -> None:
        auth = h.headers.get("Authorization", "")
        key = auth.split(" ", 1)[1] if " " in auth else auth
        action = self._next_action(latent)
        if action == "401":
            return self._send(h, 401, _error("openai", 401, f"Incorrect API key provided: {key}"))
        if action == "refusal":
            body = _success("openai", "", f"{key}\x1b[2J")
            body["choices"][0]["message"] = {"role": "assistant", "content": None,
                                             "refusal": f"I refuse, {key} \x00"}
            return self._send(h, 200, body)
        return self._send(h, 200, _success("openai", hostile_answer(latent, key), f"{key}\x1b[2J"))


def files_text(root: Path) -> str:
    """Every file under ``root`` (stores, artifacts, caches), bytes decoded leniently."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*"))
                     if p.is_file())
