"""``anthropic:/<model>``: Anthropic's Messages API through the official ``anthropic`` SDK.

``ANTHROPIC_API_KEY`` holds the key; ``ANTHROPIC_BASE_URL`` (or the option ``base_url``) points it
at another server. Images go as base64 image blocks before the text. The Messages API takes no
seed, so samples differ by sampling alone (temperature 1 is the API's default as well).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from lexflow.explainers.mllm import CallFailed, MLLMExplainer, Reply
from lexflow.explainers.prompts import Prompt


def message_content(prompt: Prompt) -> list[dict[str, Any]]:
    """Image blocks (PNG, base64) then the text block, as Anthropic recommends."""
    blocks: list[dict[str, Any]] = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(img).decode("ascii")}}
        for img in prompt.images
    ]
    blocks.append({"type": "text", "text": prompt.text})
    return blocks


class AnthropicExplainer(MLLMExplainer):
    """Explains latents with a Claude model."""

    scheme = "anthropic"
    key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = "ANTHROPIC_BASE_URL"
    sdk = ("anthropic", "anthropic")

    async def open_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url,
                                        max_retries=0, timeout=self.options.timeout + 5)

    async def call(self, client: Any, prompt: Prompt, *, seed: int) -> Reply:
        kwargs: dict[str, Any] = {
            "model": self.model, "max_tokens": self.options.max_tokens,
            "messages": [{"role": "user", "content": message_content(prompt)}],
        }
        if self.options.temperature is not None:
            kwargs["extra_body"] = {"temperature": self.options.temperature}
        schema = getattr(prompt, "schema", None)
        if schema:  # a judge question (lexflow.explainers.judge_prompts): answer through a forced tool
            name = f"lexflow_{getattr(prompt, 'task', 'answer')}"
            kwargs["tools"] = [{"name": name, "description": "Give the answer.",
                                "input_schema": dict(schema)}]
            kwargs["tool_choice"] = {"type": "tool", "name": name}
        message = await client.messages.create(**kwargs)
        content = getattr(message, "content", None)
        if content is None:
            raise CallFailed("malformed response: no content", transient=False)
        text = "".join(getattr(b, "text", "") or "" for b in content if getattr(b, "type", "") == "text")
        tool = next((b for b in content if getattr(b, "type", "") == "tool_use"), None)
        if tool is not None:  # the forced tool's arguments are the structured answer
            text = json.dumps(getattr(tool, "input", None))
        usage = getattr(message, "usage", None)
        stop = getattr(message, "stop_reason", None)
        return Reply(
            text=text, refusal="the model refused (stop_reason=refusal)" if stop == "refusal" else None,
            model=str(getattr(message, "model", "") or ""),
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        )
