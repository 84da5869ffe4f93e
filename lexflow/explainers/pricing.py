"""Cost accounting: a small price table per known model, and token estimates for dry runs.

Prices are US dollars per million tokens (input, output), as published by the providers when this
table was written; they change, so treat costs as estimates and override them with the explainer
options ``price_input`` and ``price_output``. A model is matched by the longest table prefix of its
name, so dated snapshots (``gpt-4o-2024-08-06``) find their family. Unknown models and local
servers (Ollama) cost 0.
"""

from __future__ import annotations

import math
import struct

# scheme -> model-name prefix -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-5": (1.25, 10.00),
        "gpt-5-mini": (0.25, 2.00),
    },
    "anthropic": {
        "claude-3-5-haiku": (0.80, 4.00),
        "claude-3-5-sonnet": (3.00, 15.00),
        "claude-3-7-sonnet": (3.00, 15.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-opus-4": (15.00, 75.00),
        "claude-haiku-4": (1.00, 5.00),
    },
    "gemini": {
        "gemini-1.5-flash": (0.075, 0.30),
        "gemini-1.5-pro": (1.25, 5.00),
        "gemini-2.0-flash": (0.10, 0.40),
        "gemini-2.5-flash": (0.30, 2.50),
        "gemini-2.5-pro": (1.25, 10.00),
    },
}
ESTIMATED_OUTPUT_TOKENS = 60  # a JSON answer of one sentence, for dry-run estimates


def price_for(scheme: str, model: str) -> tuple[float, float]:
    """(input, output) USD per million tokens; (0, 0) when the model is not in the table."""
    table = PRICES.get(scheme, {})
    best = max((p for p in table if model.lower().startswith(p)), key=len, default=None)
    return table[best] if best else (0.0, 0.0)


def cost_usd(prices: tuple[float, float], input_tokens: int, output_tokens: int) -> float:
    return (prices[0] * input_tokens + prices[1] * output_tokens) / 1e6


def text_tokens(text: str) -> int:
    """A rough count (about four characters per token) for estimates only."""
    return math.ceil(len(text) / 4)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG header, or (0, 0) if ``data`` is not a PNG."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 0, 0


def image_tokens(scheme: str, width: int, height: int) -> int:
    """Input tokens one image costs, by each provider's published rule (estimates)."""
    if width <= 0 or height <= 0:
        return 0
    if scheme == "openai":  # high detail: fit in 2048, short side to 768, 170 per 512 tile + 85
        s = min(1.0, 2048 / max(width, height))
        w, h = width * s, height * s
        s = min(1.0, 768 / min(w, h))
        w, h = w * s, h * s
        return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
    if scheme == "anthropic":  # long edge at most 1568 px, then w * h / 750
        s = min(1.0, 1568 / max(width, height))
        return math.ceil(width * s * height * s / 750)
    if scheme == "gemini":  # 258 per image up to 384 px, else per 768 px tile
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    return 576  # a LLaVA-style encoder: one token per patch of a 336 px image
