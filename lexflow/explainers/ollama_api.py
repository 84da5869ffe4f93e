"""``ollama:/<model>``: a local Ollama server's /api/chat, spoken with httpx directly.

``OLLAMA_HOST`` (``127.0.0.1:11434`` by default; a scheme is optional) or the option ``base_url``
names the server. No key. Images go as base64 strings in the message; the seed and temperature as
options. The model's digest (from /api/tags) is part of cache keys, so a re-pulled model is asked
again. Local models cost nothing in the accounting.
"""

from __future__ import annotations

import base64
from typing import Any

from lexflow.explainers.mllm import CallFailed, MLLMExplainer, Reply
from lexflow.explainers.prompts import Prompt

DEFAULT_HOST = "http://127.0.0.1:11434"


def host_url(value: str | None) -> str:
    """``OLLAMA_HOST`` forms (``0.0.0.0:11434``, ``http://h:p``, ``h``) as a base URL."""
    value = (value or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in value:
        value = "http://" + value
    scheme, rest = value.split("://", 1)
    host = rest.split("/", 1)[0]
    if host.startswith("0.0.0.0"):  # a bind-all address; connect to this machine
        rest = "127.0.0.1" + rest[len("0.0.0.0"):]
    if ":" not in host.rsplit("]", 1)[-1]:
        rest = rest.replace(host, host + ":11434", 1)
    return f"{scheme}://{rest}"


class OllamaExplainer(MLLMExplainer):
    """Explains latents with a vision model served by Ollama (llava, llama3.2-vision, qwen2.5vl...)."""

    scheme = "ollama"
    base_url_env = "OLLAMA_HOST"
    sdk = ("httpx", "ollama")

    async def open_client(self) -> Any:
        import httpx

        return httpx.AsyncClient(base_url=host_url(self.base_url), timeout=self.options.timeout + 5)

    async def model_identity(self, client: Any) -> str:
        response = await client.get("/api/tags")
        response.raise_for_status()
        wanted = {self.model, self.model + ":latest"}
        for m in response.json().get("models", []):
            if m.get("name") in wanted or m.get("model") in wanted:
                return str(m.get("digest", ""))
        return ""

    async def call(self, client: Any, prompt: Prompt, *, seed: int) -> Reply:
        options: dict[str, Any] = {"seed": seed, "num_predict": self.options.max_tokens}
        if self.options.temperature is not None:
            options["temperature"] = self.options.temperature
        message: dict[str, Any] = {"role": "user", "content": prompt.text}
        if prompt.images:
            message["images"] = [base64.b64encode(img).decode("ascii") for img in prompt.images]
        body: dict[str, Any] = {"model": self.model, "messages": [message], "stream": False,
                                "options": options}
        schema = getattr(prompt, "schema", None)
        if schema:  # a judge question (lexflow.explainers.judge_prompts): structured output
            body["format"] = dict(schema)
        response = await client.post("/api/chat", json=body)
        response.raise_for_status()
        try:
            data = response.json()
            text = data["message"]["content"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CallFailed(f"malformed response from Ollama ({type(exc).__name__})",
                             transient=False) from exc
        return Reply(text=text, model=str(data.get("model", "")),
                     input_tokens=int(data.get("prompt_eval_count") or 0),
                     output_tokens=int(data.get("eval_count") or 0))
