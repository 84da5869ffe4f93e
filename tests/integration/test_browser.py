"""What people see: the model-version page and the report, in headless Chromium.

An explainer written for this test (registered in lexflow's explainer registry for the test only)
answers with a script tag, an event-handler image, a javascript: link and Markdown tricks. After a
real `explain` against the session's MLflow server, the browser only reads: the explanation text
must be visible, and none of it may run (``window.__pwned`` stays undefined).
Screenshots go to test-output/ (gitignored) and the test's tmp_path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import register_blob_model
from helpers import REPO_ROOT, unavailable, unique

from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MARKER = "lexflow-visible-7f3"
EVIL = (f"{MARKER} <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> "
        "**bold** [click](javascript:window.__pwned=3) | a | b | ![x](javascript:window.__pwned=4) "
        "https://evil.example/a www.evil.example @mallory mallory@evil.example")
LINK_BAIT = ("evil.example", "mallory")  # bare URLs, www. hosts, @mentions, e-mail addresses
OUT = REPO_ROOT / "test-output"


class EvilExplainer(Explainer):
    """A test double: every answer is the same hostile string (so certainty is 1)."""

    scheme = "evil"
    is_mllm = True

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        return ExplainResponse(request.index, (f"{EVIL} latent {request.label}",) * request.samples)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        unavailable(f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER} missing): run `make "
                    "browser` (apt-get install chromium chromium-driver) to run this test.")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = OUT / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1600", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_text(driver: Any, text: str, timeout: float = 60.0) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: text in (d.execute_script("return document.body ? document.body.innerText : ''")))
    except TimeoutException:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        pytest.fail(f"{text!r} not visible at {driver.current_url} after {timeout:.0f} s. Page text:\n"
                    f"{body[:2000]}")
    return str(driver.execute_script("return document.body.innerText"))


def _wait_for_frame(driver: Any, timeout: float = 60.0) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: (d.find_elements("css selector", "iframe") or [None])[0])
    except TimeoutException:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        pytest.fail(f"no artifact preview iframe at {driver.current_url}. Page text:\n{body[:2000]}")


def _shot(driver: Any, tmp_path: Path, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    driver.save_screenshot(str(tmp_path / name))
    shutil.copy(tmp_path / name, OUT / name)


def _pwned(driver: Any) -> Any:
    return driver.execute_script("return typeof window.__pwned === 'undefined' ? null : window.__pwned")


def test_explanations_are_visible_and_inert(tracking: str, no_progress: None, browser: Any,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from lexflow import plugins
    from lexflow.config import ExplainConfig
    from lexflow.tracking.job import explain

    monkeypatch.setitem(plugins.BUILTIN[plugins.EXPLAINER_GROUP], "evil", f"{__name__}:EvilExplainer")
    name = unique("browser-blob")
    version = register_blob_model(name)
    result = explain(f"models:/{name}/{version}",
                     ExplainConfig(explainer="evil", rows=2, samples=2, latents=(0, 1), cache="none"),
                     progress=False)
    assert result.latents[0].explanation == f"{EVIL} latent 00"
    tags = MlflowClient().get_model_version(name, version).tags
    assert tags["lexflow.latent.00"] == f"{EVIL} latent 00"

    # the model-version page: tags and the description section lexflow owns
    browser.get(f"{tracking}/#/models/{name}/versions/{version}")
    text = _wait_for_text(browser, f"{MARKER} <script>window.__pwned=1</script>")
    _shot(browser, tmp_path, "model-version-page.png")
    assert "Latent explanations" in text  # the description section rendered
    assert _pwned(browser) is None
    assert not browser.find_elements("css selector", "a[href^='javascript']")
    assert not browser.find_elements("xpath", "//img[@src='x']")
    links = [a.get_attribute("href") or "" for a in browser.find_elements("css selector", "a")]
    assert not [h for h in links if any(b in h for b in LINK_BAIT)], "answer text became a link"

    # the report: MLflow serves artifacts as attachments (never rendered on its origin) ...
    import requests

    served = requests.get(f"{tracking}/get-artifact",
                          params={"path": "lexflow/report.html", "run_uuid": result.run_id}, timeout=30)
    assert served.status_code == 200 and "attachment" in served.headers.get("Content-Disposition", "")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in served.text
    # ... and previews them in the run's artifact view, inside an iframe
    exp = MlflowClient().get_run(result.run_id).info.experiment_id
    browser.get(f"{tracking}/#/experiments/{exp}/runs/{result.run_id}/artifacts/lexflow/report.html")
    frame = _wait_for_frame(browser)
    browser.switch_to.frame(frame)
    _wait_for_text(browser, f"{MARKER} <script>window.__pwned=1</script>")
    assert _pwned(browser) is None
    browser.switch_to.default_content()
    _shot(browser, tmp_path, "report-in-mlflow-ui.png")
    assert _pwned(browser) is None

    local = MlflowClient().download_artifacts(result.run_id, "lexflow/report.html", str(tmp_path))
    browser.get(Path(local).as_uri())
    text = _wait_for_text(browser, f"{EVIL} latent 01")
    _shot(browser, tmp_path, "report-file.png")
    # every picture decodes in the browser, the animations (GIFs lexflow writes itself) too
    pictures = browser.execute_script(
        "return [...document.images].map(i => [i.src.slice(0, 15), i.complete && i.naturalWidth > 0])")
    assert [p for p in pictures if p[0].startswith("data:image/gif")], pictures
    assert all(ok for _, ok in pictures), pictures
    assert "<script>window.__pwned=1</script>" in text  # shown as text, not run
    assert _pwned(browser) is None
    assert browser.execute_script("return document.querySelectorAll('script').length") == 0
    assert not browser.find_elements("xpath", "//img[@src='x']")
