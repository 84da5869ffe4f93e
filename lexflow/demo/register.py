"""Register the demo beta-TCVAE in the MLflow Model Registry (used by `make demo` and the tests).

This is ordinary user code, the way a team would log a VAE for lexflow: mlflow.pytorch with pickle
serialization (torch.export would keep only forward()), the module's source in ``code_paths``,
explicit ``pip_requirements`` and the optional ``lexflow`` metadata.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

DEMO_NAME = "lexflow-demo-vae"
CHECKSUM_TAG = "lexflow.demo.checkpoint_sha256"


def _state_sha(model: object) -> str:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)  # type: ignore[attr-defined]
    return hashlib.sha256(buf.getvalue()).hexdigest()


def register(name: str = DEMO_NAME, *, progress: bool = True) -> tuple[str, str, bool]:
    """Log and register the demo model unless the same weights are already registered.

    Returns (name, version, created).
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow import MlflowClient

    from lexflow.demo import vae
    from lexflow.demo.train import load_or_train

    model = load_or_train(progress=progress)
    sha = _state_sha(model)
    client = MlflowClient()
    versions: list = []
    try:
        versions = list(client.search_model_versions(f"name='{name}'"))
    except Exception:  # the registered model does not exist yet
        versions = []
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        if mv.tags.get(CHECKSUM_TAG) == sha:
            return name, str(mv.version), False
    experiment = client.get_experiment_by_name("lexflow-demo")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("lexflow-demo")
    with mlflow.start_run(experiment_id=experiment_id, run_name="demo beta-TCVAE"):
        mlflow.log_params({"latent_dim": model.latent_dim, "dataset": "dsprites-like 32px"})
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            code_paths=[str(Path(vae.__file__))],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "mlflow"],
            registered_model_name=name,
            metadata={"lexflow": {"output_range": [0, 1], "bias": "disentanglement"}},
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(name, version, CHECKSUM_TAG, sha)
    client.update_model_version(
        name,
        version,
        description="Demo beta-TCVAE trained by lexflow on dSprites-like shapes "
        "(shape, scale, rotation, x, y, colour).",
    )
    return name, version, True
