"""Loopback HTTP servers speaking each MLLM wire format, scripted per test (a test double).

One :class:`MLLMServer` speaks one wire format: ``openai`` (POST /v1/chat/completions),
``anthropic`` (POST /v1/messages), ``gemini`` (POST /v1beta/models/<m>:generateContent) or
``ollama`` (POST /api/chat, GET /api/tags). It finds the latent a request is about from the prompt
text ("latent variable z_3"), answers with :func:`default_answer` for it, and first plays any
faults scripted for that latent (``server.script[3] = ["429:1", "500"]``; key ``"*"`` for any):

    ok | text:<answer> | 429[:retry-after] | 500 | 503 | 400 | 401 | slow:<seconds> |
    malformed | empty | refusal | blocked

Every request is recorded (:attr:`MLLMServer.seen`), with the images decoded from the wire.

A request whose prompt names no latent (a quality-suite judge question) is answered by
:attr:`MLLMServer.judge`, a function of the request (its prompt text and images) giving the answer
text, when set; faults for it are scripted under the key None. When an Anthropic request forces a
tool (structured output) and the answer text is a JSON object, it comes back as that tool's
``tool_use`` block, as the real API answers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WIRES = ("openai", "anthropic", "gemini", "ollama")
MEANINGS = {
    0: ("horizontal position", "the blob moves from left to right", "distance from the left edge"),
    1: ("vertical position", "the blob moves from the top to the bottom", "distance from the top"),
    2: ("blob size", "the blob becomes larger", "size"),
    3: ("blob hue", "the colour of the blob shifts through the hues", "hue"),
}
REFUSAL = "I'm sorry, but I can't help with that."
_LATENT = re.compile(r"latent variable z_(\d+)")


def default_answer(latent: int | None) -> str:
    label, sentence, increases = MEANINGS.get(latent if latent is not None else -1,
                                              ("something", "something changes", "something"))
    return json.dumps({"label": label, "sentence": f"As z_{latent} increases, {sentence}.",
                       "increases": increases})


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    latent: int | None
    images: list[bytes] = field(default_factory=list)
    seed: int | None = None
    started: float = 0.0
    answered: bool = False
    text: str = ""  # the prompt text, as extracted from the wire


def _extract(wire: str, body: dict[str, Any]) -> tuple[str, list[bytes], int | None]:
    """(prompt text, images, seed) from a request body of ``wire``."""
    texts: list[str] = []
    images: list[bytes] = []
    seed = None
    if wire == "openai":
        seed = body.get("seed")
        for msg in body.get("messages", []):
            for part in msg.get("content", []) if isinstance(msg.get("content"), list) else []:
                if part.get("type") == "text":
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    assert url.startswith("data:image/png;base64,"), url[:40]
                    images.append(base64.b64decode(url.split(",", 1)[1]))
    elif wire == "anthropic":
        for msg in body.get("messages", []):
            for block in msg.get("content", []):
                if block.get("type") == "text":
                    texts.append(block["text"])
                elif block.get("type") == "image":
                    assert block["source"]["type"] == "base64"
                    assert block["source"]["media_type"] == "image/png"
                    images.append(base64.b64decode(block["source"]["data"]))
    elif wire == "gemini":
        seed = body.get("generationConfig", {}).get("seed")
        for content in body.get("contents", []):
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                inline = part.get("inline_data") or part.get("inlineData")
                if inline:
                    assert (inline.get("mime_type") or inline.get("mimeType")) == "image/png"
                    data = inline["data"]  # the SDK sends URL-safe base64, maybe unpadded
                    images.append(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    elif wire == "ollama":
        seed = body.get("options", {}).get("seed")
        for msg in body.get("messages", []):
            texts.append(msg.get("content", ""))
            images += [base64.b64decode(i) for i in msg.get("images", [])]
    return "\n".join(texts), images, seed


def _tool_use(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The Anthropic ``tool_use`` block answering a request that forces a tool, or None."""
    choice = body.get("tool_choice") or {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if choice.get("type") != "tool" or not isinstance(value, dict):
        return None
    return {"type": "tool_use", "id": "toolu_1", "name": choice.get("name", ""), "input": value}


def _success(wire: str, text: str, model: str) -> dict[str, Any]:
    if wire == "openai":
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}}
    if wire == "anthropic":
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 1000, "output_tokens": 50}}
    if wire == "gemini":
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 50,
                                  "totalTokenCount": 1050}, "modelVersion": model}
    return {"model": model, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text}, "done": True,
            "prompt_eval_count": 1000, "eval_count": 50}


def _refused(wire: str, model: str) -> dict[str, Any]:
    """The provider's own refusal signal (not just refusing words)."""
    if wire == "openai":
        body = _success(wire, "", model)
        body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": REFUSAL}
        return body
    if wire == "anthropic":
        body = _success(wire, "", model)
        body["content"], body["stop_reason"] = [], "refusal"
        return body
    if wire == "gemini":
        return {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY"}],
                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 0}}
    return _success(wire, REFUSAL, model)


def _error(wire: str, status: int, message: str) -> dict[str, Any]:
    if wire == "openai":
        return {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}
    if wire == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    if wire == "gemini":
        return {"error": {"code": status, "message": message, "status": "UNAVAILABLE"}}
    return {"error": message}


class _Server(ThreadingHTTPServer):
    """A threading HTTP server whose listen backlog holds a whole wave of concurrent calls
    (socketserver's default is 5: a client that opens 16 connections at once then has some
    wait for a retry, which reads as a slow provider)."""

    request_queue_size = 128


class MLLMServer:
    """A scripted loopback server; use as a context manager or call start()/stop()."""

    def __init__(self, wire: str, model: str = "test-model") -> None:
        assert wire in WIRES, wire
        self.wire, self.model = wire, model
        self.script: dict[Any, list[str]] = {}
        self.answers: dict[int, str] = {}  # latent -> answer text overriding default_answer
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0  # seconds added to every call (the benchmark's "slow server")
        self.judge: Callable[[Seen], str] | None = None  # answers requests naming no latent
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> MLLMServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"mllm-{self.wire}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL an SDK is pointed at."""
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.wire == "openai" else root

    @property
    def calls(self) -> list[Seen]:
        """Model calls (not /api/tags lookups)."""
        with self._lock:
            return [s for s in self.seen if s.method == "POST"]

    # --- handling ---
    def _next_action(self, latent: int | None) -> str:
        with self._lock:
            for key in (latent, "*"):
                queue = self.script.get(key)
                if queue:
                    return queue.pop(0)
        return "ok"

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        if method == "GET" and h.path.startswith("/api/tags"):
            with self._lock:
                self.seen.append(Seen(method, h.path, dict(h.headers), {}, None))
            tag = f"{self.model}:latest"
            return self._send(h, 200, {"models": [{"name": tag, "model": tag, "digest": "sha256:feedface"}]})
        text, images, seed = _extract(self.wire, body)
        match = _LATENT.search(text)
        latent = int(match.group(1)) if match else None
        record = Seen(method, h.path, dict(h.headers), body, latent, images, seed, time.monotonic(),
                      text=text)
        with self._lock:
            self.seen.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(h, latent, record)
            record.answered = True
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h: BaseHTTPRequestHandler, latent: int | None, record: Seen | None = None) -> None:
        action = self._next_action(latent)
        name, _, arg = action.partition(":")
        if self.delay:
            self._stopping.wait(self.delay)
        if name == "slow":
            self._stopping.wait(float(arg or 5))
            name = "ok"
        if name in ("429", "500", "503", "400", "401"):
            headers = {"Retry-After": arg} if name == "429" and arg else {}
            return self._send(h, int(name), _error(self.wire, int(name), f"scripted {name}"), headers)
        if name == "malformed":
            return self._send(h, 200, None, raw=b'{"choices": [ this is not json')
        if name == "blocked":
            return self._send(h, 200, _refused(self.wire, self.model))
        if latent is None and name == "ok" and self.judge is not None and record is not None:
            name, arg = "text", self.judge(record)
        text = {"empty": "", "refusal": REFUSAL, "text": arg}.get(
            name, self.answers.get(latent, default_answer(latent)) if latent is not None else "A sentence.")
        body = _success(self.wire, text, self.model)
        tool = _tool_use(record.body, text) if self.wire == "anthropic" and record is not None else None
        if tool is not None:
            body["content"], body["stop_reason"] = [tool], "tool_use"
        return self._send(h, 200, body)
