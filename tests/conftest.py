"""Shared fixtures: a real MLflow server (session scope), throwaway SQLite stores, and helpers that
register tiny decoders with known latent meanings (PyTorch, ONNX, pyfunc).

Every process started here is stopped here (by its PID / process group).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
MODELS_DIR = TESTS_DIR / "models"
MODELS_EXPERIMENT = "lexflow-test-models"

# The decoders must pickle as `models.blob.BlobDecoder` (loadable wherever code_paths is unpacked).
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from helpers import (  # noqa: E402
    VENV_BIN,
    Completed,
    clean_env,
    experiment_id,
    point_tracking_at,
    run_command,
)
from helpers import mlflow_server as start_mlflow_server  # noqa: E402
from models.blob import BlobDecoder  # noqa: E402

# Fixtures of the production backends (S3, PostgreSQL, a server on both, a flaky proxy).
pytest_plugins = ["backends"]


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log: Path
    root: Path


# --- the answer cache: never the user's ----------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _answer_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every process a test starts) caches answers in a throwaway directory, not
    in ``~/.cache/lexflow``: a test never reads a cached answer a past run left there, and never
    fills the user's cache. A test that needs its own cache still sets LEXFLOW_CACHE_DIR itself."""
    from lexflow.cache import ENV_CACHE_DIR

    path = tmp_path_factory.mktemp("lexflow-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_CACHE_DIR, str(path))
        yield path


# --- the MLflow server ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow server`` on loopback, SQLite backend, proxied artifacts, one worker."""
    root = tmp_path_factory.mktemp("mlflow-server")
    store = ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    with start_mlflow_server(root, store) as (url, proc, log):
        yield Server(url, proc.pid, log, root)


# --- tracking URIs ----------------------------------------------------------------------------

@pytest.fixture
def tracking(mlflow_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLFLOW_TRACKING_URI (env and mlflow) set to the session's server for this test."""
    with point_tracking_at(mlflow_server.url, monkeypatch) as uri:
        yield uri


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite store, copied for each test (migrating costs ~2 s of CPU)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("sqlite-template")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with point_tracking_at(f"sqlite:///{root / 'mlflow.db'}", mp):
            MlflowClient().search_experiments()  # creates the tables and the Default experiment
    return root / "mlflow.db"


@pytest.fixture
def sqlite_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    _sqlite_template: Path) -> Iterator[str]:
    """A throwaway ``sqlite:///`` store; its artifacts land under tmp_path (the test's cwd)."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    shutil.copyfile(_sqlite_template, db)
    with closing(sqlite3.connect(db)) as conn, conn:  # the Default experiment's artifacts: here too
        conn.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                     (str(tmp_path / "mlruns" / "0"),))
    monkeypatch.chdir(tmp_path)  # a sqlite store's default artifact root is ./mlruns
    with point_tracking_at(f"sqlite:///{db}", monkeypatch) as uri:
        yield uri


@pytest.fixture
def no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXFLOW_NO_PROGRESS", "1")


def subprocess_env(tracking_uri: str, **extra: str) -> dict[str, str]:
    """Environment for a lexflow / mlflow subprocess: the venv first on PATH, no progress bars."""
    return clean_env(MLFLOW_TRACKING_URI=tracking_uri, LEXFLOW_NO_PROGRESS="1",
                     PYTHONUNBUFFERED="1", **extra)


def lexflow_cli(*args: str, tracking_uri: str, timeout: float = 120.0, **env: str) -> Completed:
    """``.venv/bin/lexflow <args>`` as a subprocess."""
    return run_command([str(VENV_BIN / "lexflow"), *args], subprocess_env(tracking_uri, **env),
                       timeout)


# --- registering tiny models ------------------------------------------------------------------

def _models_experiment_id() -> str:
    """Models are logged in their own experiment so explain runs can be counted per experiment."""
    return experiment_id(MODELS_EXPERIMENT)


def _version_of(info: Any) -> str:
    version = info.registered_model_version
    assert version is not None, "log_model did not register a model version"
    return str(version)


def register_torch_model(name: str, module: Any, metadata: dict[str, Any] | None = None) -> str:
    """Log ``module`` with mlflow.pytorch (pickle + code_paths) and register it; the version."""
    import mlflow
    import mlflow.pytorch

    with mlflow.start_run(experiment_id=_models_experiment_id()):
        info = mlflow.pytorch.log_model(
            module, name="model", serialization_format="pickle", code_paths=[str(MODELS_DIR)],
            pip_requirements=["torch"], registered_model_name=name,
            metadata={"lexflow": metadata} if metadata else None,
        )
    return _version_of(info)


def register_blob_model(name: str, *, metadata: dict[str, Any] | None = None,
                        **blob_kwargs: Any) -> str:
    """Register a BlobDecoder (z0=x, z1=y, z2=size, z3=hue, rest inactive); the version."""
    return register_torch_model(name, BlobDecoder(**blob_kwargs), metadata)


def onnx_decoder(latent_dim: int = 4, side: int = 16) -> Any:
    """z [N, d] -> MatMul W -> Add b -> Reshape [N, 1, side, side] -> Sigmoid, built with onnx.helper.

    The bias draws a bright round blob on a dark background; z0 shifts its mass left -> right,
    z1 brightens its rim (the blob grows), every further latent has zero weights (inactive).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    mask = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / (2 * 0.15**2)).ravel()
    w = np.zeros((latent_dim, side * side), np.float32)
    w[0] = 6.0 * (xx.ravel() - 0.5) * mask
    if latent_dim > 1:
        w[1] = mask
    bias = (6.0 * mask - 3.0).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["z", "W"], ["flat"]),
            helper.make_node("Add", ["flat", "b"], ["biased"]),
            helper.make_node("Reshape", ["biased", "shape"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["image"]),
        ],
        "lexflow_test_decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent_dim])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, side, side])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "b"),
                     numpy_helper.from_array(np.array([-1, 1, side, side], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def register_onnx_model(name: str, latent_dim: int = 4) -> str:
    import mlflow
    import mlflow.onnx

    with mlflow.start_run(experiment_id=_models_experiment_id()):
        info = mlflow.onnx.log_model(onnx_decoder(latent_dim), name="model",
                                     pip_requirements=["onnx", "onnxruntime"],
                                     registered_model_name=name)
    return _version_of(info)


def _blob_pyfunc_class() -> type:
    import mlflow.pyfunc

    class BlobPyfunc(mlflow.pyfunc.PythonModel):
        """predict: float32 [N, d] -> [N, 3, 32, 32] through a BlobDecoder (same meanings)."""

        def __init__(self, latent_dim: int) -> None:
            self.latent_dim = latent_dim

        def predict(self, context: Any, model_input: np.ndarray, params: Any = None) -> np.ndarray:
            import torch
            from models.blob import BlobDecoder

            z = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            with torch.no_grad():
                return BlobDecoder(self.latent_dim).decode(z).numpy()

    return BlobPyfunc


def register_pyfunc_model(name: str, latent_dim: int = 4, *, with_latent_dim: bool = True) -> str:
    """A pyfunc decoder; ``with_latent_dim=False`` logs it without the lexflow metadata."""
    import mlflow
    import mlflow.pyfunc

    metadata = {"lexflow": {"latent_dim": latent_dim}} if with_latent_dim else None
    python_model = _blob_pyfunc_class()(latent_dim)
    with mlflow.start_run(experiment_id=_models_experiment_id()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=python_model,
            code_paths=[str(MODELS_DIR)], pip_requirements=["torch"], metadata=metadata,
            registered_model_name=name,
        )
    return _version_of(info)


@pytest.fixture
def register_blob() -> Callable[..., str]:
    """``register_blob(name, metadata=None, **BlobDecoder kwargs) -> version``."""
    return register_blob_model


@pytest.fixture
def register_torch() -> Callable[..., str]:
    """``register_torch(name, module, metadata=None) -> version``."""
    return register_torch_model


@pytest.fixture
def register_onnx() -> Callable[..., str]:
    """``register_onnx(name, latent_dim=4) -> version``."""
    return register_onnx_model


@pytest.fixture
def register_pyfunc() -> Callable[..., str]:
    """``register_pyfunc(name, latent_dim=4, with_latent_dim=True) -> version``."""
    return register_pyfunc_model


# --- reading back what lexflow wrote ----------------------------------------------------------

def experiment_runs(experiment_name: str) -> list[Any]:
    """Runs of an experiment, oldest first ([] when the experiment does not exist)."""
    from mlflow import MlflowClient

    c = MlflowClient()
    exp = c.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture
def mllm_servers() -> Iterator[Callable[..., Any]]:
    """Start loopback MLLM servers (tests/mllm_servers.py) for a test; all stopped at teardown."""
    from mllm_servers import MLLMServer

    started: list[MLLMServer] = []

    def start(wire: str, model: str = "test-model") -> MLLMServer:
        server = MLLMServer(wire, model).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
