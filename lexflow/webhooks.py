"""A small receiver for MLflow webhooks: a new model version is explained, then gated.

::

    export LEXFLOW_WEBHOOK_SECRET=...           # the secret given to MlflowClient.create_webhook
    python -m lexflow.webhooks --port 8765 --policy policy.yaml --promote candidate-ok

MLflow 3 signs each delivery the Standard Webhooks way (mlflow/webhooks/delivery.py): headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (unix seconds) and ``X-MLflow-Signature`` =
``v1,<base64 HMAC-SHA256(secret, f"{delivery_id}.{timestamp}.{body}")>``. A request is accepted
only when the signature matches, the timestamp is within ``--tolerance`` seconds of now, and the
delivery id was not seen before (replays are refused with 409). Accepted
``model_version.created`` events are answered 202 at once and processed one at a time in a
worker thread: ``lexflow.tracking.job.explain`` and then ``lexflow.gate.gate`` (recording the verdict
as ``lexflow.gate.*`` tags and, when it passes, moving the ``--promote`` alias).

Trust (see the README): only models named by ``--models`` (required; no default) are acted on,
and only ONNX models are loaded unless ``--allow-pickle`` is given (lexflow.trust). Every
connection has a read timeout (``--read-timeout``); a client that goes away mid-request costs
one log line.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lexflow import names

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
MAX_BODY = 1 << 20  # bytes
EVENT_MODEL_VERSION_CREATED = ("model_version", "created")

log = logging.getLogger("lexflow.webhooks")


class WebhookRejected(Exception):
    """A delivery that is not accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class DeliveryMemory:
    """Delivery ids seen within the tolerance window (older ones are refused by timestamp)."""

    def __init__(self, ttl: float, max_size: int = 100_000) -> None:
        self.ttl, self.max_size = ttl, max_size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, delivery_id: str, now: float) -> bool:
        """Record the id; False when it was already seen (a replay)."""
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.ttl
                                  or len(self._seen) >= self.max_size):
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, memory: DeliveryMemory,
           tolerance: float = 300.0, now: float | None = None) -> dict[str, Any]:
    """Check signature, timestamp and delivery id; return the parsed payload or raise
    :class:`WebhookRejected`."""
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()}
    delivery_id = lower.get(DELIVERY_ID_HEADER.lower(), "")
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    if not signature:
        raise WebhookRejected(401, f"unsigned request: no {SIGNATURE_HEADER} header")
    if not delivery_id or not timestamp:
        raise WebhookRejected(401, f"missing {DELIVERY_ID_HEADER} or {TIMESTAMP_HEADER} header")
    expected = sign(secret, delivery_id, timestamp, body)
    # Several space-separated signatures are allowed (secret rotation, as in Standard Webhooks).
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signature.split()):
        raise WebhookRejected(401, "signature does not match")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected(401, f"{TIMESTAMP_HEADER} is not unix seconds: {timestamp!r}") from None
    if abs(now - sent) > tolerance:
        raise WebhookRejected(401, f"timestamp {sent} is {now - sent:+.0f} s from now "
                                   f"(tolerance {tolerance:.0f} s): stale or replayed")
    if not memory.remember(delivery_id, now):
        raise WebhookRejected(409, f"delivery {delivery_id} was already received (replay)")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected(400, f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


@dataclass(frozen=True)
class Job:
    """One model version to explain and gate."""

    name: str
    version: str
    delivery_id: str


@dataclass(frozen=True)
class ReceiverConfig:
    """What the receiver does with a new version.

    Attributes:
        secret: the webhook's signing secret.
        policy_path: the gate policy; promote: alias set when the gate passes (None: none).
        explain_options: keyword arguments of :class:`lexflow.config.ExplainConfig`.
        models: fnmatch patterns of registered model names to act on; empty: none (the allow-list
            is explicit: ``*`` must be given to act on every model).
        tolerance: seconds a delivery's timestamp may differ from now.
        experiment: MLflow experiment of the explanation runs.
        allow_pickle: also load models whose loading runs code (pickled PyTorch, pyfunc);
            False: ONNX only (lexflow.trust).
        read_timeout: seconds a connection may take to send its request.
    """

    secret: str
    policy_path: str
    promote: str | None = None
    explain_options: Mapping[str, Any] | None = None
    models: tuple[str, ...] = ()
    tolerance: float = 300.0
    experiment: str | None = None
    allow_pickle: bool = False
    read_timeout: float = 30.0


def process(job: Job, config: ReceiverConfig) -> str:
    """Explain the version, then gate it (recording the verdict); the gate status."""
    from lexflow.config import ExplainConfig
    from lexflow.errors import LexflowError
    from lexflow.gate import gate, load_policy
    from lexflow.tracking.job import explain
    from lexflow.trust import UntrustedModelError, check_automatic

    uri = f"models:/{job.name}/{job.version}"
    policy = load_policy(config.policy_path)
    try:
        check_automatic(uri, allow_pickle=config.allow_pickle)
    except UntrustedModelError as exc:  # nothing of the model was loaded; nothing is written
        log.warning("refused %s: %s", uri, exc)
        return "refused"
    try:
        explain(uri, ExplainConfig(**dict(config.explain_options or {})), progress=False,
                experiment=config.experiment)
    except LexflowError as exc:  # the version is tagged failed; the gate records why it fails
        log.warning("explaining %s failed: %s", uri, exc)
    result = gate(uri, policy, promote=config.promote, record=True)
    log.info("gate %s: %s%s", uri, result.status,
             "".join(f"\n  - {c.message}" for c in result.failures))
    return result.status


class Receiver:
    """The HTTP server and its worker thread."""

    def __init__(self, config: ReceiverConfig, host: str = "127.0.0.1", port: int = 0,
                 handle: Callable[[Job, ReceiverConfig], str] = process) -> None:
        self.config, self.handle = config, handle
        self.memory = DeliveryMemory(ttl=2 * config.tolerance)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.done: list[tuple[Job, str]] = []
        self.httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self.worker = threading.Thread(target=self._work, name="lexflow-webhook-worker", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                status = self.handle(job, self.config)
            except Exception as exc:  # keep serving; the error is logged with the job
                log.exception("processing models:/%s/%s failed", job.name, job.version)
                status = f"error: {type(exc).__name__}: {exc}"
            self.done.append((job, status))
            self.jobs.task_done()

    def accept(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Verify one delivery and queue its job; the HTTP status and a short reason."""
        try:
            payload = verify(self.config.secret, headers, body, memory=self.memory,
                             tolerance=self.config.tolerance)
        except WebhookRejected as exc:
            log.warning("rejected delivery: %s", exc.reason)
            return exc.status, exc.reason
        event = (payload.get("entity"), payload.get("action"))
        data = payload.get("data") or {}
        if event != EVENT_MODEL_VERSION_CREATED:
            return 200, f"ignored event {event[0]}.{event[1]}"
        name, version = str(data.get("name", "")), str(data.get("version", ""))
        if not name or not version.isdigit():
            return 400, "model_version.created payload without name and version"
        if not any(fnmatch.fnmatchcase(name, pat) for pat in self.config.models):
            return 200, f"ignored model {name!r}"
        delivery = {k.lower(): v for k, v in headers.items()}.get(DELIVERY_ID_HEADER.lower(), "")
        self.jobs.put(Job(name, version, delivery))
        return 202, f"queued models:/{name}/{version}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "lexflow-webhooks"
            timeout = receiver.config.read_timeout  # per connection (socket timeout)

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionError, TimeoutError) as exc:  # the client went away
                    log.warning("%s: connection aborted (%s)", self.client_address[0],
                                type(exc).__name__)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") == "/health":
                    self._reply(200, {"status": "ok", "queued": receiver.jobs.qsize(),
                                      "done": len(receiver.done)})
                else:
                    self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    self._reply(413, {"error": f"body must be 0..{MAX_BODY} bytes"})
                    return
                body = self.rfile.read(length)
                if len(body) < length:  # the client closed before sending its body
                    log.warning("%s: connection aborted after %d of %d bytes",
                                self.client_address[0], len(body), length)
                    self.close_connection = True
                    return
                status, reason = receiver.accept(dict(self.headers.items()), body)
                self._reply(status, {"status": status, "message": reason})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.info("%s %s", self.address_string(), format % args)

        return Handler

    def serve_forever(self) -> None:
        self.worker.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.jobs.put(None)
            self.httpd.server_close()

    def shutdown(self) -> None:
        self.httpd.shutdown()


def main(argv: list[str] | None = None) -> None:
    import click

    @click.command("lexflow-webhooks")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default=8765, show_default=True, type=int)
    @click.option("--secret-env", default=names.ENV_WEBHOOK_SECRET, show_default=True,
                  help="Environment variable holding the webhook's signing secret.")
    @click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
                  help="Gate policy YAML (docs/gate.md).")
    @click.option("--promote", default=None, metavar="ALIAS", help="Alias to set when the gate passes.")
    @click.option("--explainer", default="measure", show_default=True, help="Explainer URI.")
    @click.option("--rows", default=4, show_default=True, type=int, help="Base samples per latent.")
    @click.option("--samples", default=5, show_default=True, type=int, help="Answers per latent.")
    @click.option("--threshold", default=0.5, show_default=True, type=float, help="Certainty threshold.")
    @click.option("--models", default=None,
                  help="Comma-separated fnmatch patterns of registered model names to act on "
                       "(required: give '*' to act on every model).")
    @click.option("--allow-pickle", is_flag=True,
                  help="Also load models whose loading runs code (pickled PyTorch, pyfunc). "
                       "Default: ONNX models only.")
    @click.option("--read-timeout", default=30.0, show_default=True, type=float,
                  help="Seconds a connection may take to send its request.")
    @click.option("--tolerance", default=300.0, show_default=True, type=float,
                  help="Seconds a delivery's timestamp may be away from now.")
    @click.option("--experiment", default=None, help="MLflow experiment of the explanation runs.")
    def cli(host: str, port: int, secret_env: str, policy_path: str, promote: str | None,
            explainer: str, rows: int, samples: int, threshold: float, models: str | None,
            tolerance: float, experiment: str | None, allow_pickle: bool = False,
            read_timeout: float = 30.0) -> None:
        """Receive MLflow model_version.created webhooks; explain and gate each new version."""
        from lexflow.config import ExplainConfig
        from lexflow.errors import LexflowError
        from lexflow.gate import load_policy

        secret = os.environ.get(secret_env, "")
        try:
            if not secret:
                raise click.UsageError(
                    f"The webhook secret is not set: export {secret_env}=<the secret given to "
                    "MlflowClient.create_webhook>. Unsigned deliveries are never accepted.")
            patterns = tuple(p.strip() for p in (models or "").split(",") if p.strip())
            if not patterns:
                raise click.UsageError(
                    "--models is required: the model names (fnmatch patterns, comma-separated) "
                    "to act on, e.g. --models 'vae-*'; write --models '*' for every model.")
            if not 0 < read_timeout <= 3600:
                raise click.UsageError("--read-timeout must be between 0 and 3600 seconds.")
            if promote:
                from lexflow.gate.registry import check_alias

                check_alias(promote)
            load_policy(policy_path)  # fail now, not at the first delivery
            options = {"explainer": explainer, "rows": rows, "samples": samples, "threshold": threshold}
            ExplainConfig(**options)  # type: ignore[arg-type]
        except LexflowError as exc:
            click.echo(f"lexflow webhooks: error: {exc}", err=True)
            sys.exit(2)
        config = ReceiverConfig(secret=secret, policy_path=policy_path, promote=promote,
                                explain_options=options,
                                models=patterns, tolerance=tolerance, experiment=experiment,
                                allow_pickle=allow_pickle, read_timeout=read_timeout)
        receiver = Receiver(config, host, port)
        os.environ.setdefault(names.ENV_NO_PROGRESS, "1")
        click.echo(f"lexflow webhooks: listening on http://{host}:{receiver.port}/", err=True)
        receiver.serve_forever()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cli.main(args=argv, prog_name="python -m lexflow.webhooks")


if __name__ == "__main__":
    main()
