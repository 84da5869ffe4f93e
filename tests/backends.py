"""Real production backends for the tests, started on loopback and stopped at the end:

* an S3 endpoint: moto's server mode (``moto_server``) with one bucket;
* a PostgreSQL cluster: Debian's postgresql, ``initdb`` + ``pg_ctl`` in a temp dir, run as the
  ``postgres`` user when the tests run as root (postgres refuses to run as root);
* ``mlflow server`` with the PostgreSQL backend store and ``s3://`` as its default artifact root
  (clients read and write artifacts straight from S3, as in most production setups);
* :class:`FlakyProxy`, a TCP proxy in front of the server that can refuse connections, so a test
  can take the tracking server away from a running lexflow and bring it back;
* :class:`CountingBlob`, the blob decoder that logs every traversal it decodes and can be slowed
  down, so crash tests can count work across a SIGKILL.

Test modules load this as a plugin (``pytest_plugins = ["backends"]``); the fixtures are session
scoped, so every test file shares one of each. Every process started here is stopped by its
process group.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from helpers import (  # noqa: E402
    VENV_BIN,
    Completed,
    clean_env,
    experiment_id,
    finish,
    free_port,
    lexflow_tags,
    log_tail,
    mlflow_server,
    point_tracking_at,
    spawn,
    start_command,
    stop_process_group,
    unique,
    wait_http,
)
from models.counting import CountingBlob, traversals_in  # noqa: E402

__all__ = ["Completed", "CountingBlob", "finish", "free_port", "lexflow_tags", "traversals_in",
           "unique"]  # what tests import from here

BUCKET = "lexflow-artifacts"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}


# --- S3 (moto server mode) --------------------------------------------------------------------

@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_S3_ENDPOINT_URL": self.endpoint, **AWS_ENV}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **{
            "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS_ENV["AWS_DEFAULT_REGION"]})

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                         Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    root = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = root / "moto.log"
    env = {**os.environ, **AWS_ENV}
    proc = spawn([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log, env)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/", proc, log, "moto_server", timeout=60)
        s3 = S3(endpoint, BUCKET)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        stop_process_group(proc, grace=3.0)


# --- PostgreSQL -------------------------------------------------------------------------------

def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str

    def uri(self, database: str) -> str:
        """For libpq / psycopg2.connect."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def store_uri(self, database: str) -> str:
        """For MLflow (SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://)."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), removed afterwards."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        reason = ("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                  "`make postgres` installs Debian's postgresql")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="lexflow-pg-"))
    data, log = root / "data", root / "postgres.log"
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=90)
        subprocess.run([*as_user, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p",
                        str(port), "-U", "postgres", "mlflow"], check=True, capture_output=True,
                       timeout=60)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start PostgreSQL: {exc}\n{exc.stderr!r}\n{log_tail(log)}")
    try:
        yield Postgres("127.0.0.1", port, "postgres")
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


# --- mlflow server: PostgreSQL store, S3 artifacts --------------------------------------------

@dataclass(frozen=True)
class Backend:
    """The running server and what a client needs to reach it and its artifact store."""

    url: str
    s3: S3
    store_uri: str
    pg_dsn: str
    artifact_root: str
    log: Path

    def env(self, tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
        return clean_env(**self.s3.env(), MLFLOW_TRACKING_URI=tracking_uri or self.url,
                         LEXFLOW_NO_PROGRESS="1", PYTHONUNBUFFERED="1", **extra)


@pytest.fixture(scope="session")
def pg_s3_server(moto_s3: S3, postgres: Postgres,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("mlflow-pg-s3")
    store = postgres.store_uri("mlflow")
    artifacts = f"s3://{moto_s3.bucket}/mlflow"
    args = ["--backend-store-uri", store, "--default-artifact-root", artifacts,
            "--no-serve-artifacts"]
    with mlflow_server(root, args, clean_env(**moto_s3.env()), "mlflow server (postgres + s3)"
                       ) as (url, _, log):
        yield Backend(url, moto_s3, store, postgres.uri("mlflow"), artifacts, log)


@pytest.fixture
def backend(pg_s3_server: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """This process pointed at the postgres + S3 server for one test (env and mlflow globals)."""
    yield from _point_at(pg_s3_server, pg_s3_server.url, monkeypatch)


def _point_at(b: Backend, uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    with point_tracking_at(uri, monkeypatch, {**b.s3.env(), "LEXFLOW_NO_PROGRESS": "1"}):
        yield b


# --- the tracking server going away -----------------------------------------------------------

class FlakyProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` until :meth:`down` is called: then it
    closes its listening socket and every open connection (clients get "connection refused", as
    from a server that died), until :meth:`up` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(64)
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        for s in [listener, *conns]:
            if s is None:
                continue
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def register_module(name: str, module: torch.nn.Module) -> str:
    """Log ``module`` (pickle + code_paths: tests/models) and register it."""
    import mlflow
    import mlflow.pytorch

    with mlflow.start_run(experiment_id=experiment_id("lexflow-test-backends-models")):
        info = mlflow.pytorch.log_model(
            module, name="model", serialization_format="pickle",
            code_paths=[str(TESTS_DIR / "models")], pip_requirements=["torch"],
            registered_model_name=name)
    return str(info.registered_model_version)


def start_lexflow(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m lexflow <args>`` in its own process group (a crash test may kill it)."""
    return start_command([sys.executable, "-m", "lexflow", *args], env)


def run_lexflow(args: list[str], env: dict[str, str], timeout: float = 180.0) -> Completed:
    return finish(start_lexflow(args, env), timeout)
