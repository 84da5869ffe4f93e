"""The registry page shows what each latent does: headless Chromium opens the model-version page
of the MLflow UI (the session's ``mlflow server``, the app ``mlflow ui`` serves) after a real
explain of a 16-latent model, and checks that every strip in lexflow's description section loads
(naturalWidth > 0, drawn at its own size), and that the table is readable at 1280 px wide: no
sideways scrolling, rows no taller than a strip and two lines of text, explanations not squeezed.
Screenshots are kept under the test's tmp dir and test-output/ (paths printed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import register_blob_model
from helpers import unique
from test_browser import OUT, _shot, _wait_for_text, browser  # noqa: F401 - the fixture

from lexflow import names
from lexflow.stages.render import STRIP_CELL

USER_TEXT = "Owner's notes: trained on blobs. Keep this paragraph."
LATENTS = 16


def _strips(driver: Any) -> list[dict[str, Any]]:
    return list(driver.execute_script("""
        return Array.from(document.querySelectorAll('img'))
          .filter(i => decodeURIComponent(i.getAttribute('src') || '').includes(arguments[0]))
          .map(i => ({src: i.getAttribute('src'), complete: i.complete,
                      natural: i.naturalWidth, naturalHeight: i.naturalHeight,
                      width: i.getBoundingClientRect().width,
                      height: i.getBoundingClientRect().height}));
    """, names.STRIP_DIR + "/"))


def test_model_version_page_shows_a_strip_per_latent_readably(
        tracking: str, no_progress: None, browser: Any, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    from lexflow.config import ExplainConfig
    from lexflow.tracking.job import explain

    name = unique("page-blob")
    version = register_blob_model(name, latent_dim=LATENTS)
    MlflowClient().update_model_version(name, version, description=USER_TEXT)
    result = explain(f"models:/{name}/{version}", ExplainConfig(rows=2), progress=False)
    description = MlflowClient().get_model_version(name, version).description
    assert description.startswith(USER_TEXT)
    assert description.count("](get-artifact?path=lexflow%2Fstrips%2F") == LATENTS

    browser.set_window_size(1280, 1800)
    browser.get(f"{tracking}/#/models/{name}/versions/{version}")
    _wait_for_text(browser, "Latent explanations")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        strips = _strips(browser)
        if len(strips) == LATENTS and all(s["complete"] for s in strips):
            break
        time.sleep(0.5)
    _shot(browser, tmp_path, "registry-page-strips.png")
    with capsys.disabled():
        print(f"\nscreenshots: {tmp_path / 'registry-page-strips.png'} and "
              f"{OUT / 'registry-page-strips.png'}")
    assert len(strips) == LATENTS, strips
    for s in strips:  # loaded, and drawn at its own size (not scaled away)
        assert s["natural"] > 0 and s["naturalHeight"] == STRIP_CELL, s
        assert abs(s["height"] - STRIP_CELL) <= 1, s
        assert result.run_id in s["src"]

    layout = browser.execute_script("""
        const img = Array.from(document.querySelectorAll('img'))
          .find(i => decodeURIComponent(i.getAttribute('src') || '').includes(arguments[0]));
        const table = img.closest('table');
        const rows = Array.from(table.querySelectorAll('tr')).slice(1);
        const cells = rows.map(r => r.children[1].getBoundingClientRect());
        const t = table.getBoundingClientRect();
        return {pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
                tableRight: t.right, rows: rows.length,
                rowHeights: rows.map(r => r.getBoundingClientRect().height),
                textWidths: cells.map(c => c.width),
                fontSize: parseFloat(getComputedStyle(rows[0].children[1]).fontSize)};
    """, names.STRIP_DIR + "/")
    assert layout["rows"] == LATENTS, layout
    assert layout["pageWidth"] <= layout["viewport"] <= 1280, layout  # no sideways scrolling
    assert layout["tableRight"] <= layout["viewport"], layout
    assert layout["fontSize"] >= 12, layout
    assert min(layout["textWidths"]) >= 150, layout  # explanations are not squeezed into a column
    line = 1.6 * layout["fontSize"]
    assert max(layout["rowHeights"]) <= STRIP_CELL + 2 * line + 16, layout
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(
        "xpath", f"//img[contains(@src, 'strips') and contains(@src, '{result.run_id}')]"))
    _shot(browser, tmp_path, "registry-page-table.png")
