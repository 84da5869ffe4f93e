"""Crash safety: per-latent results saved as they finish, and picked up again after a crash.

A run saves what each latent has cost so far (the measured evidence and grid, the comparison row,
the explainer's answers) under ``lexflow/partial/`` in the run's own artifacts, so the checkpoint
lives wherever the run's artifacts live (S3, a proxied server, a local store) and a job restarted
on another machine finds it. Checkpoint files are batches named by a sequence number and a random
suffix: they are only ever added, never rewritten, so a crash mid-upload loses at most that batch.

A later ``explain`` of the same model version with the same options (the same :func:`config_key`)
resumes the unfinished run instead of starting a new one, when that run is not alive any more:

* under ``mlflow run`` (``MLFLOW_RUN_ID`` set, e.g. a Kubernetes job's pod retried), the given run;
* otherwise the run named by the version's ``lexflow.run_id`` tag when the version's status is
  running or failed, the run has the same key, is not FINISHED, and its owner is gone: on this host
  its process no longer exists; on another host its heartbeat is older than
  ``LEXFLOW_RESUME_STALE_S`` seconds (default 600).

A run whose owner is alive is never resumed: the new run starts afresh and takes the version over
(see the tag protocol in :mod:`lexflow.tracking.tags`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from lexflow import names
from lexflow.config import ExplainConfig, env_seconds
from lexflow.engine import Restored
from lexflow.explainers.base import ExplainResponse
from lexflow.stages.evidence import Evidence, PropertyChange, RegionChange
from lexflow.tracking.registry import ResolvedModel
from lexflow.tracking.runs import download_run_json, log_json_artifact, run_info, set_run_tags
from lexflow.tracking.tags import version_tags_of

# Options that change how fast a run goes, not what it computes: not part of the key.
_NOT_IN_KEY = ("device", "batch_size", "concurrency", "timeout", "cache")


def config_key(model: ResolvedModel, config: ExplainConfig) -> str:
    """A short hash of what a run computes: the pinned model, the options, the lexflow version."""
    from lexflow._version import __version__

    params = {k: v for k, v in config.as_params().items() if k not in _NOT_IN_KEY}
    doc = {"model": model.download_uri, "params": params, "lexflow": __version__,
           "extra": {k: repr(v) for k, v in sorted(config.extra.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def owner_tag() -> str:
    """Who runs this process: host and pid (for the liveness check of :func:`find_resumable`)."""
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid()})


def _owner_alive(owner: str | None, heartbeat: str | None, stale_s: float) -> bool:
    try:
        who = json.loads(owner or "{}")
    except ValueError:
        who = {}
    if who.get("host") == socket.gethostname() and isinstance(who.get("pid"), int):
        if who["pid"] == os.getpid():
            return True  # this very process (e.g. a webhook worker thread) owns it
        try:
            os.kill(who["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        return time.time() - float(heartbeat or 0) < stale_s
    except ValueError:
        return False


def find_resumable(model: ResolvedModel, key: str, *, env_run: bool = True) -> str | None:
    """The id of an unfinished, ownerless run of this version with the same key, or None.
    ``env_run``: whether MLFLOW_RUN_ID (``mlflow run``) names the run instead."""
    if env_run and os.environ.get(names.ENV_RUN_ID):
        return None  # mlflow run chose the run; Checkpoint.load checks its key
    if not (model.name and model.version):
        return None
    tags = version_tags_of(model.name, model.version)
    run_id = tags.get(names.TAG_RUN_ID)
    if not run_id or tags.get(names.TAG_STATUS) not in (names.STATUS_RUNNING, names.STATUS_FAILED):
        return None
    info = run_info(run_id)
    if info is None or info["status"] == "FINISHED" or info["deleted"]:
        return None
    run_tags = info["tags"]
    if run_tags.get(names.RUN_TAG_CONFIG_KEY) != key:
        return None
    stale = env_seconds(names.ENV_RESUME_STALE_S, 600.0)
    if info["status"] == "RUNNING" and _owner_alive(
        run_tags.get(names.RUN_TAG_OWNER), run_tags.get(names.RUN_TAG_HEARTBEAT), stale
    ):
        return None
    return str(run_id)


# --- (de)serialising per-latent results ---------------------------------------------------------

def evidence_from_dict(d: dict[str, Any]) -> Evidence:
    """The inverse of :meth:`Evidence.to_dict` (properties keep their highest-score-first order)."""
    props = tuple(
        PropertyChange(name=name, unit=p["unit"], start=p["start"], end=p["end"],
                       per_row=tuple(p["per_row"]), score=p["score"], agreement=p["agreement"])
        for name, p in d["properties"].items()
    )
    changes = tuple(
        RegionChange(**{**c, "per_row": tuple(c["per_row"]), "start_names": tuple(c["start_names"]),
                        "end_names": tuple(c["end_names"])})
        for c in d.get("changes", ())
    )
    return Evidence(index=int(d["index"]), active=bool(d["active"]),
                    total_change=float(d["total_change"]), step_change=tuple(d["step_change"]),
                    region=str(d["region"]), properties=props, changes=changes,
                    parts_measured=bool(d.get("parts_measured", False)),
                    readback=None if d.get("readback") is None else float(d["readback"]))


def _png(b64: str) -> bytes:
    return base64.b64decode(b64.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Checkpoint:
    """Saves per-latent results of one run under ``lexflow/partial/`` as they finish.

    Records are buffered and uploaded as one file per flush; a flush happens when ``interval``
    seconds have passed since the last one (``LEXFLOW_CHECKPOINT_INTERVAL``, default 5 s; 0 saves
    every latent at once) and at the end of each stage. Each flush also refreshes the run's
    heartbeat tag. Thread-safe.
    """

    def __init__(self, run_id: str, key: str, *, interval: float | None = None) -> None:
        self.run_id, self.key = run_id, key
        self.interval = (interval if interval is not None
                         else env_seconds(names.ENV_CHECKPOINT_INTERVAL, 5.0))
        self._buffer: dict[str, dict[str, Any]] = {"measured": {}, "comparison": {}, "response": {}}
        self._last = time.monotonic()
        self._seq = 0
        self._lock = threading.Lock()
        self.saved = 0  # records uploaded by this process
        self.output_range: tuple[float, float] | None = None  # the decoder's, once known
        self.restored = Restored()  # what earlier attempts saved (filled by load)

    def load(self) -> Restored:
        """Everything earlier attempts of this run saved (empty when the key differs)."""
        out = Restored()
        info = run_info(self.run_id)
        if info is None or info["tags"].get(names.RUN_TAG_CONFIG_KEY) not in (None, self.key):
            return out
        files = download_run_json(self.run_id, names.PARTIAL_DIR)
        for _, doc in sorted(files.items()):
            if doc.get("key") != self.key:
                continue
            if doc.get("output_range"):
                lo, hi = doc["output_range"]
                out.output_range = (float(lo), float(hi))
            for i, r in doc.get("measured", {}).items():
                out.measured[int(i)] = (evidence_from_dict(r["evidence"]), _png(r["grid"]))
            for i, r in doc.get("comparison", {}).items():
                out.comparisons[int(i)] = (int(r["partner"]), evidence_from_dict(r["evidence"]),
                                           _png(r["grid"]))
            for i, r in doc.get("response", {}).items():
                out.responses[int(i)] = ExplainResponse(
                    index=int(i), answers=tuple(r["answers"]), failures=tuple(r["failures"]),
                    calls=int(r["calls"]), input_tokens=int(r["input_tokens"]),
                    output_tokens=int(r["output_tokens"]), cost_usd=float(r["cost_usd"]))
        self._seq = len(files)
        self.restored = out
        return out

    def add_measured(self, index: int, evidence: Evidence, grid: bytes) -> None:
        self._add("measured", index, {"evidence": evidence.to_dict(), "grid": _b64(grid)})

    def add_comparison(self, index: int, partner: int, evidence: Evidence, grid: bytes) -> None:
        self._add("comparison", index,
                  {"partner": partner, "evidence": evidence.to_dict(), "grid": _b64(grid)})

    def add_response(self, r: ExplainResponse) -> None:
        self._add("response", r.index, {
            "answers": list(r.answers), "failures": list(r.failures), "calls": r.calls,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "cost_usd": r.cost_usd})

    def _add(self, kind: str, index: int, record: dict[str, Any]) -> None:
        with self._lock:
            self._buffer[kind][str(index)] = record
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Upload the buffered records (if any) as one new file, and refresh the heartbeat."""
        with self._lock:
            count = sum(len(v) for v in self._buffer.values())
            self._last = time.monotonic()
            if not count:
                return
            doc = {"key": self.key, "output_range": self.output_range, **self._buffer}
            self._seq += 1
            name = f"{self._seq:06d}-{uuid.uuid4().hex[:8]}.json"
            log_json_artifact(self.run_id, f"{names.PARTIAL_DIR}/{name}", doc)
            set_run_tags(self.run_id, {names.RUN_TAG_HEARTBEAT: f"{time.time():.0f}"})
            self._buffer = {"measured": {}, "comparison": {}, "response": {}}
            self.saved += count
