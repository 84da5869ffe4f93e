"""MLflow webhooks -> `python -m lexflow.webhooks` -> explain + gate, against a real server.

The server here is this module's own: webhook delivery to a receiver on loopback needs
MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https (mlflow/utils/validation.py::_validate_webhook_url) and
MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true (mlflow/webhooks/ssrf.py), which the shared server lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import Server, register_blob_model, subprocess_env
from helpers import (
    REPO_ROOT,
    clean_env,
    free_port,
    lexflow_tags,
    log_tail,
    mlflow_server,
    point_tracking_at,
    spawn,
    stop_process_group,
    unique,
    wait_http,
)

from lexflow import names
from lexflow.webhooks import DeliveryMemory, WebhookRejected, sign, verify

SECRET = "s3cret-" + uuid.uuid4().hex


# --- signature verification (pure) ------------------------------------------------------------

def _signed(body: bytes, *, ts: int | None = None, delivery: str | None = None,
            secret: str = SECRET) -> dict[str, str]:
    from mlflow.webhooks.delivery import _generate_hmac_signature  # MLflow's own signer

    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, body.decode())}


def test_signature_matches_mlflows_signer() -> None:
    body = b'{"entity": "model_version", "action": "created", "data": {}}'
    h = _signed(body, ts=1_700_000_000, delivery="d1")
    assert sign(SECRET, "d1", "1700000000", body) == h["X-MLflow-Signature"]


def test_verify_rejects_unsigned_wrong_stale_and_replayed() -> None:
    body = json.dumps({"entity": "model_version", "action": "created", "data": {}}).encode()
    memory = DeliveryMemory(ttl=600)
    now = time.time()

    def reject(headers: dict[str, str], payload: bytes = body) -> WebhookRejected:
        with pytest.raises(WebhookRejected) as err:
            verify(SECRET, headers, payload, memory=memory, tolerance=300, now=now)
        return err.value

    h = _signed(body)
    unsigned = {k: v for k, v in h.items() if k != "X-MLflow-Signature"}
    assert reject(unsigned).status == 401 and "unsigned" in reject(unsigned).reason
    assert reject(_signed(body, secret="other")).reason == "signature does not match"
    assert reject(h, body + b" ").reason == "signature does not match"  # body tampered
    stale = reject(_signed(body, ts=int(now) - 3600))
    assert stale.status == 401 and "stale or replayed" in stale.reason
    assert verify(SECRET, h, body, memory=memory, now=now)["entity"] == "model_version"
    replay = reject(h)
    assert replay.status == 409 and "already received" in replay.reason
    # header names are case-insensitive; a second signature (secret rotation) is accepted
    h2 = {k.lower(): v for k, v in _signed(body).items()}
    h2["x-mlflow-signature"] = "v1,AAAA " + h2["x-mlflow-signature"]
    assert verify(SECRET, h2, body, memory=memory, now=now)["action"] == "created"


# --- end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An mlflow server that may deliver webhooks over http to 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow-webhook-server")
    env = clean_env(MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
                    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true", MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES="0")
    store = ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts")]
    with mlflow_server(root, store, env, "mlflow server (webhooks)") as (url, proc, log):
        yield Server(url, proc.pid, log, root)


@pytest.fixture(scope="module")
def receiver(webhook_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python -m lexflow.webhooks` on loopback, gating with a policy and promoting to `gated`."""
    root = tmp_path_factory.mktemp("receiver")
    policy = root / "policy.yaml"
    policy.write_text("thresholds: {min_explainable_fraction: 0.5}\n"
                      "explanation: {lexflow_version: '>=0.1,<1'}\n")
    port = free_port()
    log = root / "receiver.log"
    env = subprocess_env(webhook_server.url, LEXFLOW_WEBHOOK_SECRET=SECRET)
    cmd = [sys.executable, "-m", "lexflow.webhooks", "--port", str(port), "--policy", str(policy),
           "--promote", "gated", "--rows", "3", "--tolerance", "60", "--models", "hook-*",
           "--allow-pickle"]
    proc = spawn(cmd, log, env, cwd=REPO_ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, "lexflow.webhooks")
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop_process_group(proc)


def test_receiver_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != names.ENV_WEBHOOK_SECRET}
    done = subprocess.run([sys.executable, "-m", "lexflow.webhooks", "--port", "1",
                           "--policy", str(policy)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"export {names.ENV_WEBHOOK_SECRET}=" in done.stderr


def test_receiver_rejects_bad_deliveries_over_http(receiver: tuple[str, Path]) -> None:
    url, _ = receiver
    body = json.dumps({"entity": "registered_model", "action": "created",
                       "data": {"name": "hook-x"}}).encode()
    h = _signed(body)
    unsigned = {k: v for k, v in h.items() if k != "X-MLflow-Signature"}
    r = requests.post(url, data=body, headers=unsigned, timeout=10)
    assert r.status_code == 401 and "unsigned" in r.json()["message"]
    r = requests.post(url, data=body, headers=_signed(body, secret="wrong"), timeout=10)
    assert r.status_code == 401 and r.json()["message"] == "signature does not match"
    r = requests.post(url, data=body, headers=_signed(body, ts=int(time.time()) - 600), timeout=10)
    assert r.status_code == 401 and "stale or replayed" in r.json()["message"]
    r = requests.post(url, data=body, headers=h, timeout=10)
    assert r.status_code == 200 and r.json()["message"] == "ignored event registered_model.created"
    r = requests.post(url, data=body, headers=h, timeout=10)  # the same delivery again
    assert r.status_code == 409 and "already received" in r.json()["message"]


def test_new_version_is_explained_gated_and_promoted(
        webhook_server: Server, receiver: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    url, log = receiver
    with point_tracking_at(webhook_server.url, monkeypatch):
        c = MlflowClient()
        hook = c.create_webhook(name=unique("lexflow"), url=url + "/", secret=SECRET,
                                events=["model_version.created"])
        # MLflow's own test delivery, signed by the server: accepted (an unwatched model name)
        probe = c.test_webhook(hook.webhook_id)
        assert probe.success and probe.response_status == 200, probe
        assert "ignored model 'example_model'" in (probe.response_body or "")

        name = unique("hook-blob")
        version = register_blob_model(name)  # the server now sends model_version.created
        deadline = time.monotonic() + 120
        tags: dict[str, str] = {}
        while time.monotonic() < deadline:
            tags = lexflow_tags(name, version)
            if names.TAG_GATE_STATUS in tags:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no gate verdict on {name}/{version} after 120 s; tags {tags}\n"
                        f"receiver log:\n{log_tail(log, 60)}\nserver log:\n{log_tail(webhook_server.log)}")
        assert tags[names.TAG_STATUS] == "complete", log_tail(log)
        assert tags["lexflow.latent.00"] == "moves the object from left to right"
        assert tags[names.TAG_GATE_STATUS] == "passed", tags.get(names.TAG_GATE_FAILURES)
        assert tags[names.TAG_GATE_RUN_ID] == tags[names.TAG_RUN_ID]
        assert c.get_model_version_by_alias(name, "gated").version == version
    assert f"gate models:/{name}/{version}: passed" in log.read_text()
