"""The pictures for people, end to end against a throwaway SQLite store: a strip and an animated
traversal per latent and a certainty chart per run are logged beside the grids and shown in
report.html, for grey (1-channel) and RGBA (4-channel) models too; a picture that cannot be drawn
is named in the run's log and explanations.json while the grids still log and the run finishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import register_torch_model
from helpers import unique
from mlflow import MlflowClient

import lexflow
from lexflow import names
from lexflow.config import ExplainConfig

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("sqlite_tracking", "no_progress")


def _artifacts(run_id: str) -> set[str]:
    c = MlflowClient()
    out: set[str] = set()
    for folder in (names.ARTIFACT_DIR, names.TRAVERSAL_DIR, names.STRIP_DIR):
        out |= {f.path for f in c.list_artifacts(run_id, folder)}
    return out


def _download(run_id: str, path: str, tmp_path: Path) -> Path:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                    dst_path=str(tmp_path / unique("dl"))))


@pytest.mark.parametrize("channels", [1, 4])
def test_strips_animations_and_chart_are_logged_and_reported(channels: int, tmp_path: Path) -> None:
    from models.channels import ChannelBlob
    from PIL import Image

    name = unique(f"grey{channels}")
    version = register_torch_model(name, ChannelBlob(channels))
    result = lexflow.explain(f"models:/{name}/{version}", ExplainConfig(rows=2), progress=False,
                             experiment=unique("exp"))
    assert result.render_failures == ()
    paths = _artifacts(result.run_id)
    for i in range(4):
        assert names.traversal_path(i, 4) in paths
        assert names.strip_path(i, 4) in paths
        assert names.animation_path(i, 4) in paths
    assert names.CERTAINTY_CHART in paths

    strip = Image.open(_download(result.run_id, names.strip_path(0, 4), tmp_path))
    assert strip.format == "PNG" and strip.height <= 48 and strip.width > 3 * strip.height
    gif_path = _download(result.run_id, names.animation_path(0, 4), tmp_path)
    assert gif_path.stat().st_size < 300_000
    gif = Image.open(gif_path)
    assert gif.format == "GIF" and gif.n_frames > 2
    chart = Image.open(_download(result.run_id, names.CERTAINTY_CHART, tmp_path))
    assert chart.format == "PNG"

    report = _download(result.run_id, names.REPORT_FILE, tmp_path).read_text(encoding="utf-8")
    assert report.count("src='data:image/gif;base64,") == 4
    assert "alt='certainty per latent against the threshold'" in report
    doc = json.loads(_download(result.run_id, names.EXPLANATIONS_FILE, tmp_path).read_text())
    assert doc["latents"][0]["strip"] == names.strip_path(0, 4)
    assert doc["latents"][0]["animation"] == names.animation_path(0, 4)
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert metrics[names.METRIC_IMAGES] == 0.0  # measure sends no images to anyone


def test_a_picture_that_cannot_be_drawn_is_named_not_fatal(
        register_blob: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from lexflow import engine
    from lexflow.stages.render import RenderError

    def no_gif(frames: Any, *_: Any, **__: Any) -> bytes:
        raise RenderError(f"cannot animate frames of shape {tuple(frames.shape)}")

    monkeypatch.setattr(engine, "traversal_gif", no_gif)
    name = unique("blob")
    version = register_blob(name)
    result = lexflow.explain(f"models:/{name}/{version}", ExplainConfig(rows=2), progress=False,
                             experiment=unique("exp"))
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    paths = _artifacts(result.run_id)
    assert {names.traversal_path(i, 5) for i in range(5)} <= paths  # the grids still log
    assert {names.strip_path(i, 5) for i in range(5)} <= paths
    assert not any(p.endswith(".gif") for p in paths)
    err = capfd.readouterr().err
    assert "lexflow: warning: latent 00: could not draw the animation: RenderError" in err
    doc = json.loads(_download(result.run_id, names.EXPLANATIONS_FILE, tmp_path).read_text())
    assert len(doc["render_failures"]) == 5
    assert all(r["animation"] is None for r in doc["latents"])
    report = _download(result.run_id, names.REPORT_FILE, tmp_path).read_text(encoding="utf-8")
    assert "Pictures not drawn" in report and "could not draw the animation" in report
