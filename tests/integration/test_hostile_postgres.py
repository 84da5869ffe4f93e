"""Faults that only a production store shows: PostgreSQL keeps at most 5,000 characters of a
model-version description and refuses NUL characters, where SQLite takes anything.

* 64 and 512 latents explained by the offline explainer, with the user's own long description
  on the version: the run completes (exit 0), the user's text is kept, and lexflow's section fits
  beside it with a pointer to the report;
* the hostile OpenAI-compatible server (tests/hostile.py) against PostgreSQL: it echoes the key
  and sends NUL, escapes and bidi overrides; the run completes and nothing of it is stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from backends import Backend, CountingBlob, lexflow_tags, register_module, run_lexflow, unique
from hostile import CONTROLS, EchoKeyServer

pytestmark = pytest.mark.integration

USER_TEXT = "Owner's notes: " + "trained on shapes; keep this text. " * 80  # ~2,800 characters


def _register(backend: Backend, latent_dim: int, description: str | None = None) -> tuple[str, str]:
    from mlflow import MlflowClient

    name = unique(f"pg-{latent_dim}")
    version = register_module(name, CountingBlob(latent_dim=latent_dim))
    if description:
        MlflowClient().update_model_version(name, version, description=description)
    return name, version


def _pg_description(backend: Backend, name: str, version: str) -> str:
    import psycopg2

    with psycopg2.connect(backend.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT description FROM model_versions WHERE name = %s AND version = %s",
                    (name, int(version)))
        (text,) = cur.fetchone()
    return str(text or "")


@pytest.mark.parametrize("latent_dim", [64, 512])
def test_description_fits_the_postgres_column(backend: Backend, latent_dim: int) -> None:
    name, version = _register(backend, latent_dim, USER_TEXT)
    done = run_lexflow(["explain", f"models:/{name}/{version}", "--json", "--no-progress",
                        "--rows", "2", "--steps", "3", "--experiment", "lexflow-pg-hostile"],
                       backend.env(), timeout=600)
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == "complete" and len(result["latents"]) == latent_dim
    tags = lexflow_tags(name, version)
    assert tags["lexflow.status"] == "complete"
    description = _pg_description(backend, name, version)
    assert len(description) <= 5000
    assert description.startswith(USER_TEXT.rstrip())  # the user's text is kept as it was
    assert "Latent explanations" in description and "lexflow/report.html" in description
    assert "more latents" in description  # the table was shortened, and says so


def test_hostile_server_against_postgres(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Any) -> None:
    import psycopg2

    key = "sk-pg-hostile-0123456789"
    name, version = _register(backend, 8)
    with EchoKeyServer() as server:
        server.script[1] = ["401", "refusal", "ok"]
        done = run_lexflow(
            ["explain", f"models:/{name}/{version}", "--json", "--no-progress", "--rows", "2",
             "--samples", "3", "--explainer", "openai:/gpt-4o", "-o", "backoff=0.01",
             "--experiment", "lexflow-pg-hostile"],
            backend.env(OPENAI_API_KEY=key, OPENAI_BASE_URL=server.url,
                        LEXFLOW_CACHE_DIR=str(tmp_path / "cache")), timeout=300)
    assert done.returncode == 0, done.describe()
    assert len(server.calls) == 12
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] in ("complete", "partial")
    tags = lexflow_tags(name, version)
    assert "***" in tags["lexflow.latent.00"]
    with psycopg2.connect(backend.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM model_version_tags WHERE name = %s", (name,))
        stored = [v for (v,) in cur.fetchall()]
        cur.execute("SELECT description FROM model_versions WHERE name = %s", (name,))
        stored += [d or "" for (d,) in cur.fetchall()]
        cur.execute("SELECT value FROM params WHERE run_uuid = %s", (result["run_id"],))
        stored += [v for (v,) in cur.fetchall()]
        cur.execute("SELECT value FROM tags WHERE run_uuid = %s", (result["run_id"],))
        stored += [v for (v,) in cur.fetchall()]
    s3 = backend.s3.client()
    keys = [k for k in backend.s3.keys("") if result["run_id"] in k and k.endswith((".json", ".html"))]
    objects = [f"{k}: " + s3.get_object(Bucket=backend.s3.bucket, Key=k)["Body"].read().decode(
        "utf-8", "replace") for k in keys]
    cache = [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
    assert objects and cache
    for where, texts in (("postgres", stored), ("s3 artifacts", objects), ("cache", cache),
                         ("output", [done.stdout, done.stderr])):
        joined = "\n".join(texts)
        assert key not in joined, f"the key leaked into {where}"
        if where != "output":
            bad = [t[:120] for t in texts if any(c in t for c in CONTROLS)]
            assert not bad, f"control characters in {where}: {bad}"
