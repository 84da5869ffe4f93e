"""lexflow against production backends: an ``mlflow server`` whose backend store is PostgreSQL and
whose artifacts live in S3 (moto's server mode), all real processes on loopback.

The model is uploaded to S3 by the registering client, pulled from S3 by ``lexflow explain`` (a
subprocess, as a user runs it), and the explanation artifacts are written to S3; the tests read
the objects back with boto3 and the tags back from PostgreSQL itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from backends import Backend, CountingBlob, register_module, run_lexflow
from helpers import lexflow_tags, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def explained(pg_s3_server: Backend) -> dict[str, Any]:
    """One blob model registered and explained through the CLI against postgres + S3."""
    import mlflow

    env = pg_s3_server.env()
    mlflow.set_tracking_uri(pg_s3_server.url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in pg_s3_server.s3.env().items():
            mp.setenv(key, value)
        name = unique("s3pg-blob")
        version = register_module(name, CountingBlob(latent_dim=5))
    done = run_lexflow(["explain", f"models:/{name}/{version}", "--json", "--experiment",
                        "lexflow-s3pg", "--no-progress"], env)
    assert done.returncode == 0, done.describe()
    return {"name": name, "version": version, "result": json.loads(done.stdout.splitlines()[-1])}


def _run_artifact_prefix(backend: Backend, run_id: str) -> str:
    from mlflow import MlflowClient

    uri = MlflowClient().get_run(run_id).info.artifact_uri
    bucket_prefix = f"s3://{backend.s3.bucket}/"
    assert uri.startswith(bucket_prefix), f"run artifacts are not in S3: {uri}"
    return uri[len(bucket_prefix):]


def test_model_is_pulled_from_s3_and_explanations_are_written_there(
        backend: Backend, explained: dict[str, Any]) -> None:
    result = explained["result"]
    assert result["status"] == "complete"
    by_label = {r["label"]: r for r in result["latents"]}
    assert "left to right" in by_label["00"]["explanation"]
    assert by_label["04"]["status"] == "inactive"

    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(explained["name"], explained["version"])
    assert mv.source.startswith(("s3://", "models:/"))
    model_keys = [k for k in backend.s3.keys("mlflow/") if k.endswith("/MLmodel")]
    assert model_keys, "the registered model's files are not in the bucket"

    prefix = _run_artifact_prefix(backend, result["run_id"])
    keys = set(backend.s3.keys(prefix))
    for rel in ("lexflow/explanations.json", "lexflow/report.html",
                "lexflow/traversals/latent_00.png", "lexflow/traversals/latent_00_comparison.png"):
        assert f"{prefix}/{rel}" in keys, f"{rel} missing from s3://{backend.s3.bucket}/{prefix}"
    assert any(k.startswith(f"{prefix}/lexflow/partial/") for k in keys), "no checkpoint in S3"
    body = backend.s3.client().get_object(Bucket=backend.s3.bucket,
                                          Key=f"{prefix}/lexflow/explanations.json")["Body"].read()
    assert json.loads(body)["run_id"] == result["run_id"]


def test_tags_are_stored_in_postgres(backend: Backend, explained: dict[str, Any]) -> None:
    import psycopg2

    tags = lexflow_tags(explained["name"], explained["version"])
    assert tags["lexflow.status"] == "complete"
    assert tags["lexflow.run_id"] == explained["result"]["run_id"]
    assert tags["lexflow.latent.01"] == "moves the object from top to bottom"

    with psycopg2.connect(backend.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, value FROM model_version_tags WHERE name = %s AND version = %s",
                    (explained["name"], int(explained["version"])))
        stored = dict(cur.fetchall())
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (explained["result"]["run_id"],))
        (run_status,) = cur.fetchone()
    assert {k: v for k, v in stored.items() if k.startswith("lexflow.")} == tags
    assert run_status == "FINISHED"
