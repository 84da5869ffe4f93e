"""SIGTERM during a run: raised as Terminated, but never inside a store call (signals.deferred)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from lexflow.signals import Terminated, deferred, sigterm_raises


def test_sigterm_raises_terminated_with_the_killed_exit_code() -> None:
    with pytest.raises(Terminated) as err, sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
    assert err.value.exit_code == 128 + signal.SIGTERM


def test_sigterm_inside_deferred_is_held_until_the_block_ends() -> None:
    reached_end_of_block = False
    with pytest.raises(Terminated), sigterm_raises(), deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        with deferred():  # nested: still held
            pass
        reached_end_of_block = True
    assert reached_end_of_block


def test_deferred_in_a_worker_thread_neither_holds_nor_raises_there() -> None:
    """The signal interrupts the main thread: a worker's store call is not deferred, and a
    Terminated is never raised in the worker (the run's failure handling is in the main thread)."""
    import threading

    from lexflow import signals

    seen: list[object] = []

    def worker() -> None:
        try:
            with deferred():
                seen.append(signals._depth[0])
        except BaseException as exc:  # noqa: BLE001 - the test records anything raised
            seen.append(exc)

    with pytest.raises(Terminated), sigterm_raises(), deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == [1]  # the worker did not count itself, and raised nothing
    assert signals._depth[0] == 0


def test_run_writes_hold_a_sigterm_until_the_store_call_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracking.runs: a SIGTERM arriving during log_batch lands after the call, not inside it."""
    from lexflow.tracking import runs

    calls: list[str] = []

    class Store:
        def log_batch(self, run_id: str, **kw: object) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-call
            calls.append("finished")

    monkeypatch.setattr(runs, "client", lambda: Store())
    with pytest.raises(Terminated), sigterm_raises():
        runs.set_run_tags("r", {"a": "b"})
    assert calls == ["finished"]


def test_gate_writes_alias_and_verdict_whole_before_a_sigterm_ends_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """lexflow gate --promote: a SIGTERM while the alias is set waits until the verdict tags are
    written too (never an alias without its verdict), then ends the command with exit 143."""
    from types import SimpleNamespace

    import lexflow.gate as gate_mod
    from lexflow.gate import parse_policy, registry

    calls: list[str] = []

    def promote(name: str, version: str, alias: str) -> None:
        calls.append(f"alias {alias} -> {name}/{version}")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives between the two writes

    monkeypatch.setattr(registry, "read_version", lambda uri: SimpleNamespace(name="m", version="3"))
    monkeypatch.setattr(gate_mod, "evaluate", lambda *a, **k: SimpleNamespace(passed=True))
    monkeypatch.setattr(registry, "promote", promote)
    monkeypatch.setattr(registry, "record", lambda result, name, version: calls.append("verdict"))
    def outside(signum: int, frame: object) -> None:  # without the gate's handler: no kill
        calls.append("SIGTERM reached the caller's handler")

    original = signal.signal(signal.SIGTERM, outside)
    try:
        with pytest.raises(Terminated) as info:
            gate_mod.gate("models:/m/3", parse_policy("{}"), promote="champion")
        assert signal.getsignal(signal.SIGTERM) is outside  # the command's handler is gone again
    finally:
        signal.signal(signal.SIGTERM, original)
    assert calls == ["alias champion -> m/3", "verdict"]
    assert info.value.exit_code == 143


def test_gate_command_exits_143_when_terminated(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    import lexflow.gate as gate_mod
    from lexflow.gate.cli import command

    def terminated(*a: object, **k: object) -> None:
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(gate_mod, "gate", terminated)
    policy = tmp_path / "policy.yaml"
    policy.write_text("{}\n", encoding="utf-8")
    out = CliRunner().invoke(command, ["models:/m/3", "--policy", str(policy), "--record"])
    assert out.exit_code == 143, out.output
    assert "terminated by SIGTERM after the verdict was recorded whole" in out.output
    as_json = CliRunner().invoke(command, ["models:/m/3", "--policy", str(policy), "--record", "--json"])
    assert as_json.exit_code == 143
    answer = json.loads(as_json.stdout.splitlines()[0])
    assert answer["error"] == "Terminated" and "recorded whole" in answer["message"]
