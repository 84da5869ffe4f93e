"""Every checkpoint the repo ships loads into the model code as it is and does what the docs say
(latent count, active latents, the factor table within TOLERANCE); a stale one is one clear error
naming the command that retrains it; the checkpoints are package data, so a wheel never trains.

The documented tables are the ``checkpoints`` block of docs/quality.md, written by
``python benchmarks/checkpoints.py`` (part of ``make bench``) from 4,000 encoded images; here a few
hundred freshly encoded images must agree with them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from lexflow.errors import CheckpointError
from lexflow.families import FAMILY_NAMES, get_family
from lexflow.families import train as ftrain
from lexflow.families.base import TrainSettings

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.12
"""Largest |documented - measured| factor score allowed (400 vs 4,000 images: sampling noise of a
|Spearman| is about 0.05 at n = 400). Stated in docs/quality.md."""
ACTIVITY_MARGIN = 0.05
"""Latents whose documented activity is this close to the collapse threshold may flip."""
EVAL_N = 400


@dataclass(frozen=True)
class Row:
    latent: int
    activity: float
    active: bool
    factor: str
    score: float


def documented() -> dict[str, tuple[int, int, list[Row]]]:
    """name -> (latents, active latents, rows) from the checkpoints block of docs/quality.md."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import blocks

    text = (ROOT / "docs" / "quality.md").read_text(encoding="utf-8")
    (block,) = [b for b in blocks.blocks(text) if b.name == "checkpoints"]
    out = {}
    for section in block.body.split("\n### ")[1:]:
        name = section.split(":", 1)[0].strip()
        m = re.search(r"(\d+) latents, (\d+) active", section)
        assert m, section[:200]
        rows = [Row(int(c[0]), float(c[1]), c[2] == "yes", c[3], float(c[4]))
                for c in ([cell.strip() for cell in line.strip().strip("|").split("|")]
                          for line in section.splitlines() if re.match(r"\| \d+ \|", line))]
        out[name] = (int(m.group(1)), int(m.group(2)), rows)
    return out


def test_docs_list_every_shipped_checkpoint() -> None:
    shipped = {p.stem for p in (ROOT / "lexflow" / "families" / "checkpoints").glob("*.pt")}
    assert shipped == set(FAMILY_NAMES)
    assert set(documented()) == {"demo", *FAMILY_NAMES}
    assert "TOLERANCE" in (ROOT / "docs" / "quality.md").read_text() or str(TOLERANCE) in (
        ROOT / "docs" / "quality.md").read_text()


@pytest.mark.parametrize("name", ["demo", *FAMILY_NAMES])
def test_shipped_checkpoint_loads_and_matches_its_documented_factor_table(name: str) -> None:
    latents, active, rows = documented()[name]
    if name == "demo":
        from lexflow.demo import shapes
        from lexflow.demo.train import ACTIVE_THRESHOLD, factor_map, load_shipped

        model = load_shipped()
        fmap = factor_map(model, shapes.generate(EVAL_N, seed=123))
    else:
        from lexflow.demo.train import ACTIVE_THRESHOLD

        fam = get_family(name)
        model, meta = ftrain.read_checkpoint(ftrain.SHIPPED / f"{name}.pt", fam, fam.train, 0)
        assert meta.code_version == ftrain.code_version(fam.train.model) and meta.train_seconds
        fmap = ftrain.factor_map(model, fam, fam.generate(EVAL_N, seed=1000))
    assert model.latent_dim == latents == len(rows)
    assert sum(r.active for r in rows) == active
    for r in rows:
        measured = fmap[r.latent]["scores"][r.factor]
        assert abs(measured - r.score) <= TOLERANCE, (name, r, measured)
        if abs(r.activity - ACTIVE_THRESHOLD) > ACTIVITY_MARGIN:
            assert fmap[r.latent]["active"] == r.active, (name, r, fmap[r.latent]["activity"])


def _stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: object) -> Path:
    saved = torch.load(ftrain.SHIPPED / "digits.pt", map_location="cpu", weights_only=True)
    saved.update(changes)
    saved = {k: v for k, v in saved.items() if v is not None}
    path = tmp_path / "digits.pt"
    torch.save(saved, path)
    monkeypatch.setattr(ftrain, "SHIPPED", tmp_path)
    return path


@pytest.mark.parametrize("changes, why", [
    ({"code_version": "000000000000"}, "trained by model code 000000000000"),
    ({"format": None, "code_version": None}, "has no code-version record"),
    ({"state_dict": {"encoder.0.weight": torch.zeros(1)}}, "does not load into the model code"),
])
def test_a_stale_shipped_checkpoint_is_one_error_naming_the_retrain_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, object], why: str) -> None:
    _stale_copy(tmp_path, monkeypatch, **changes)
    fam = get_family("digits")
    with pytest.raises(CheckpointError, match=why) as info:
        ftrain.load_or_train(fam, progress=False)
    assert "python -m lexflow.families train --family digits --ship" in str(info.value)

    from lexflow.families.__main__ import main

    res = CliRunner().invoke(main, ["train", "--family", "digits"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "--family digits --ship" in res.output and "Traceback" not in res.output


def test_the_shipped_checkpoint_is_never_silently_retrained(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _stale_copy(tmp_path, monkeypatch, code_version="000000000000")
    monkeypatch.setattr(ftrain, "train", lambda *a, **k: pytest.fail("trained instead of failing"))
    with pytest.raises(CheckpointError):
        ftrain.load_or_train(get_family("digits"), progress=False)


def test_an_unknown_seed_without_training_lists_the_available_ones(tmp_path: Path) -> None:
    from lexflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Available seeds: 0\b.*--seed 7"):
        ftrain.load_or_train(get_family("dsprites"), seed=7, cache_dir=tmp_path, allow_train=False)


def test_the_demo_checkpoint_fails_clearly_when_stale(tmp_path: Path) -> None:
    from lexflow.demo.train import CHECKPOINT, load_shipped

    saved = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if "decoder" not in k}
    torch.save(saved, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="lexflow.demo.train --out lexflow/demo/checkpoint.pt"):
        load_shipped(tmp_path / "checkpoint.pt")


def test_a_built_wheel_ships_every_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lexflow", src / "lexflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lexflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = ["lexflow/demo/checkpoint.pt",
               *(f"lexflow/families/checkpoints/{n}.pt" for n in FAMILY_NAMES)]
    assert [s for s in shipped if s not in names] == []


def test_the_demo_model_is_never_silently_retrained(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lexflow.demo import train as demo_train

    saved = torch.load(demo_train.CHECKPOINT, map_location="cpu", weights_only=True)
    saved["config"] = {**saved["config"], "epochs": 999}
    stale = tmp_path / "checkpoint.pt"
    torch.save(saved, stale)
    monkeypatch.setattr(demo_train, "CHECKPOINT", stale)
    monkeypatch.setattr(demo_train, "train", lambda **k: pytest.fail("trained instead of failing"))
    with pytest.raises(CheckpointError, match="was trained with .* Retrain it with: python -m "
                                              "lexflow.demo.train"):
        demo_train.load_or_train(path=stale, progress=False)


def test_the_code_version_covers_each_model_kinds_own_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit to the layered model (lexflow/families/vae.py) makes the layered checkpoints stale
    and leaves the mask model's (dsprites, digits) valid; an edit to the shared base model or to
    the training loop makes both stale."""
    before = {kind: ftrain.code_version(kind) for kind in ("mask", "layered")}
    assert before["mask"] != before["layered"]
    real = Path.read_bytes

    def edited(suffix: str) -> Any:
        def read(self: Path) -> bytes:
            text = real(self)
            return text + b"\n# edited\n" if self.as_posix().endswith(suffix) else text
        return read

    try:
        for suffix, stale in (("lexflow/families/vae.py", {"layered"}),
                              ("lexflow/demo/vae.py", {"mask", "layered"})):
            ftrain.code_version.cache_clear()
            monkeypatch.setattr(Path, "read_bytes", edited(suffix))
            after = {kind: ftrain.code_version(kind) for kind in before}
            assert {k for k in before if after[k] != before[k]} == stale, suffix
            monkeypatch.setattr(Path, "read_bytes", real)
    finally:
        ftrain.code_version.cache_clear()
    with pytest.raises(ValueError, match="unknown model kind 'voxel'; use one of mask, layered"):
        ftrain.code_version("voxel")
    with pytest.raises(ValueError, match="unknown model kind 'voxel'; use one of mask, layered"):
        ftrain.build_model(replace(TrainSettings(), model="voxel"))
    for kind in ftrain._MODEL_SOURCES:  # every kind whose sources are hashed can be built
        assert ftrain.build_model(replace(TrainSettings(), model=kind)) is not None
