"""``openai:/<model>``: OpenAI chat completions, and any server that speaks them.

Uses the official ``openai`` SDK (AsyncOpenAI). ``OPENAI_API_KEY`` holds the key and
``OPENAI_BASE_URL`` (or the option ``base_url``) points it at another server: vLLM, llama.cpp's
server, LM Studio, LiteLLM, ... With a base URL set the key may be left unset (local servers
rarely check it). Images go as base64 PNG data URLs; the seed is sent per sample.
"""

from __future__ import annotations

import base64
from typing import Any

from lexflow.explainers.mllm import CallFailed, MLLMExplainer, Reply
from lexflow.explainers.prompts import Prompt

NO_KEY = "not-needed"  # sent to a custom server when no key is set; the SDK insists on one


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def chat_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """One user message: the text, then each image as a data URL."""
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt.text}]
    content += [{"type": "image_url", "image_url": {"url": data_url(img)}} for img in prompt.images]
    return [{"role": "user", "content": content}]


class OpenAIExplainer(MLLMExplainer):
    """Explains latents with an OpenAI (or OpenAI-compatible) chat model."""

    scheme = "openai"
    key_env = ("OPENAI_API_KEY",)
    base_url_env = "OPENAI_BASE_URL"
    sdk = ("openai", "openai")
    key_optional_with_base_url = True

    async def open_client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(api_key=self._api_key or NO_KEY, base_url=self.base_url,
                                  max_retries=0, timeout=self.options.timeout + 5)

    async def call(self, client: Any, prompt: Prompt, *, seed: int) -> Reply:
        kwargs: dict[str, Any] = {"model": self.model, "messages": chat_messages(prompt), "seed": seed}
        if self.options.temperature is not None:
            kwargs["temperature"] = self.options.temperature
        # api.openai.com's newer models take only max_completion_tokens; other servers know max_tokens
        kwargs["max_tokens" if self.base_url else "max_completion_tokens"] = self.options.max_tokens
        schema = getattr(prompt, "schema", None)
        if schema:  # a judge question (lexflow.explainers.judge_prompts): structured output
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": f"lexflow_{getattr(prompt, 'task', 'answer')}", "schema": dict(schema),
                "strict": True}}
        completion = await client.chat.completions.create(**kwargs)
        choices = getattr(completion, "choices", None)
        if not choices:
            raise CallFailed("malformed response: no choices", transient=False)
        choice = choices[0]
        message = choice.message
        usage = getattr(completion, "usage", None)
        refusal = getattr(message, "refusal", None)
        if choice.finish_reason == "content_filter" and not refusal:
            refusal = "blocked by the content filter"
        return Reply(
            text=message.content, refusal=refusal, model=str(getattr(completion, "model", "") or ""),
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
