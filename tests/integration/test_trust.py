"""The trust contract of automatic runs (README "Trust"): the webhook receiver acts only on the
models its explicit allow-list names, loads only ONNX models unless started with
``--allow-pickle``, gives each connection a read timeout, and logs one line (no traceback) for a
client that goes away mid-request.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import lexflow_tags

from lexflow import webhooks
from lexflow.webhooks import Job, Receiver, ReceiverConfig, process


def _policy(tmp_path: Path) -> str:
    p = tmp_path / "policy.yaml"
    p.write_text("schema: lexflow.policy/1\n")
    return str(p)


def test_receiver_needs_an_explicit_model_allow_list(tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXFLOW_WEBHOOK_SECRET", "s" * 32)
    with pytest.raises(SystemExit) as exit_info:
        webhooks.main(["--policy", _policy(tmp_path), "--port", "0"])
    assert exit_info.value.code == 2 and "--models" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        webhooks.main(["--policy", _policy(tmp_path), "--models", "*", "--promote", "v3"])
    assert exit_info.value.code == 2 and "reserved" in capsys.readouterr().err
    assert ReceiverConfig(secret="s", policy_path="p").models == ()  # the library default: none
    receiver = Receiver(ReceiverConfig(secret="s", policy_path="p"), handle=lambda j, c: "x")
    try:
        assert receiver.accept({}, b"")[0] == 401  # unsigned: refused before anything
    finally:
        receiver.httpd.server_close()


def test_automatic_runs_load_only_onnx_unless_pickle_is_allowed(
        sqlite_tracking: str, register_blob, register_onnx, tmp_path: Path, no_progress: None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lexflow.webhooks")
    pickled = register_blob("trust-blob")
    onnx = register_onnx("trust-onnx")
    config = ReceiverConfig(secret="s", policy_path=_policy(tmp_path), models=("*",),
                            explain_options={"rows": 2})
    assert process(Job("trust-blob", pickled, "d1"), config) == "refused"
    assert lexflow_tags("trust-blob", pickled) == {}  # nothing loaded, nothing written
    assert "pickled PyTorch model" in caplog.text and "--allow-pickle" in caplog.text
    assert process(Job("trust-onnx", onnx, "d2"), config) in ("passed", "failed")
    assert lexflow_tags("trust-onnx", onnx)["lexflow.status"] == "complete"
    allowed = ReceiverConfig(**{**config.__dict__, "allow_pickle": True})
    assert process(Job("trust-blob", pickled, "d3"), allowed) in ("passed", "failed")
    assert lexflow_tags("trust-blob", pickled)["lexflow.status"] == "complete"


@pytest.fixture
def live_receiver() -> Iterator[Receiver]:
    config = ReceiverConfig(secret="s", policy_path="p", models=("*",), read_timeout=1.0)
    receiver = Receiver(config, handle=lambda job, cfg: "ok")
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        thread.join(timeout=10)


def test_slow_and_aborted_connections_cost_one_log_line(
        live_receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd) -> None:
    caplog.set_level(logging.INFO, logger="lexflow.webhooks")
    port = live_receiver.port
    # a client that sends half a request and stalls is cut off after the read timeout
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
    slow.settimeout(10)
    start = time.monotonic()
    assert slow.recv(1024) == b""  # closed by the receiver
    assert time.monotonic() - start < 5
    slow.close()
    # a client that goes away mid-body
    gone = socket.create_connection(("127.0.0.1", port))
    gone.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
    gone.shutdown(socket.SHUT_WR)
    gone.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "connection aborted" not in caplog.text:
        time.sleep(0.05)
    aborted = [r for r in caplog.records if "aborted" in r.getMessage() or "timed out" in r.getMessage()]
    assert len(aborted) == 2, [r.getMessage() for r in caplog.records]
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in caplog.text
