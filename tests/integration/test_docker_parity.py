"""docker/ stays in step with the project: the image installs what every explainer and adapter
needs, and docker/MLproject's main entry point is the main MLproject's, parameter for parameter."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# an extra named by the code when an optional dependency is missing: require(..., extra="x") or
# an install hint "pip install 'lexflow[x]'" (EXTRA = "x" constants are resolved too)
EXTRA_NAMED = re.compile(r"""extra\s*=\s*["']([\w-]+)["']|lexflow\[([\w-]+)\]|EXTRA\s*=\s*["']([\w-]+)["']""")
SAME_MODULE = {"onnxruntime-gpu": "onnxruntime"}  # onnxruntime-gpu provides `import onnxruntime`


def _extras() -> dict[str, set[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    out = {}
    for extra, text in cfg["options.extras_require"].items():
        reqs = [r.strip() for line in text.splitlines() for r in line.split(";") if r.strip()]
        names = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
        out[extra] = {SAME_MODULE.get(n, n) for n in names}
    return out


def _image_extras() -> set[str]:
    text = (REPO / "docker" / "Dockerfile").read_text()
    found = re.findall(r'pip install "\.\[([\w,-]+)\]"', text)
    assert found, "docker/Dockerfile installs the project with pip install \".[extras]\""
    return {e for group in found for e in group.split(",")}


def test_the_image_installs_every_extra_the_code_asks_for() -> None:
    extras = _extras()
    named = set()
    for path in (REPO / "lexflow").rglob("*.py"):
        for groups in EXTRA_NAMED.findall(path.read_text(encoding="utf-8")):
            named.update(g for g in groups if g)
    named -= {"dev"}
    unknown = named - set(extras)
    assert not unknown, f"the code names extras that setup.cfg lacks: {sorted(unknown)}"
    installed = {"torch"}.union(*(extras[e] for e in _image_extras()))
    missing = {e: sorted(extras[e] - installed) for e in named if extras[e] - installed}
    assert not missing, f"docker/Dockerfile does not install what these extras need: {missing}"
    assert {"openai", "anthropic", "google-genai", "diffusers"} <= installed


def test_the_check_notices_a_missing_extra() -> None:
    extras = _extras()
    assert extras["diffusion"] - ({"torch"} | extras["onnx-gpu"] | extras["s3"])


def _main_entry(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["entry_points"]["main"]


def test_docker_project_main_entry_matches_the_main_project() -> None:
    main, docker = _main_entry(REPO / "MLproject"), _main_entry(REPO / "docker" / "MLproject")
    diffs = [f"{k}: MLproject {main['parameters'].get(k)} vs docker {docker['parameters'].get(k)}"
             for k in sorted(set(main["parameters"]) | set(docker["parameters"]))
             if main["parameters"].get(k) != docker["parameters"].get(k)]
    assert not diffs, "docker/MLproject's parameters drifted:\n" + "\n".join(diffs)
    assert " ".join(main["command"].split()) == " ".join(docker["command"].split())
