"""``gemini:/<model>``: Google's Gemini API (generateContent) through the ``google-genai`` SDK.

``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` holds the key (sent in a header, never in the URL);
``GEMINI_BASE_URL`` or the option ``base_url`` points it at another server (the SDK's
``http_options``). Images go as inline PNG data; the seed is sent per sample.
"""

from __future__ import annotations

from typing import Any

from lexflow.explainers.mllm import CallFailed, MLLMExplainer, Reply
from lexflow.explainers.prompts import Prompt

BLOCKED = ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY")


class GeminiExplainer(MLLMExplainer):
    """Explains latents with a Gemini model."""

    scheme = "gemini"
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_url_env = "GEMINI_BASE_URL"
    sdk = ("google.genai", "gemini")

    async def open_client(self) -> Any:
        from google import genai
        from google.genai import types

        http = types.HttpOptions(base_url=self.base_url, timeout=int((self.options.timeout + 5) * 1000),
                                 retry_options=types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=self._api_key, http_options=http)

    async def close_client(self, client: Any) -> None:
        await client.aio.aclose()

    async def call(self, client: Any, prompt: Prompt, *, seed: int) -> Reply:
        from google.genai import types

        parts = [types.Part.from_bytes(data=img, mime_type="image/png") for img in prompt.images]
        parts.append(types.Part.from_text(text=prompt.text))
        schema = getattr(prompt, "schema", None)  # a judge question: structured output
        structured: dict[str, Any] = ({"response_mime_type": "application/json",
                                       "response_json_schema": dict(schema)} if schema else {})
        config = types.GenerateContentConfig(
            temperature=self.options.temperature, seed=seed, max_output_tokens=self.options.max_tokens,
            **structured)
        response = await client.aio.models.generate_content(
            model=self.model, contents=[types.Content(role="user", parts=parts)], config=config)
        usage = getattr(response, "usage_metadata", None)
        tokens_in = int(getattr(usage, "prompt_token_count", 0) or 0)
        tokens_out = int(getattr(usage, "candidates_token_count", 0) or 0)
        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            return Reply(None, tokens_in, tokens_out, refusal=f"prompt blocked ({feedback.block_reason})")
        candidates = getattr(response, "candidates", None)
        if not candidates:
            raise CallFailed("malformed response: no candidates", transient=False)
        reason = str(getattr(candidates[0], "finish_reason", "") or "").rsplit(".", 1)[-1]
        content = getattr(candidates[0], "content", None)
        text = "".join(getattr(p, "text", None) or "" for p in (getattr(content, "parts", None) or []))
        refusal = f"blocked (finish_reason={reason})" if reason in BLOCKED and not text else None
        return Reply(text, tokens_in, tokens_out, refusal=refusal,
                     model=str(getattr(response, "model_version", "") or ""))
