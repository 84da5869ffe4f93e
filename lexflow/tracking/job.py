"""The MLflow job: model URI -> registry -> :func:`lexflow.engine.explain_decoder` -> run artifacts,
metrics and model-version tags. ``lexflow explain``, ``mlflow run``, :func:`lexflow.explain`,
explain-registry and the evaluator plugin all come here.

Validation happens before anything is written: a bad URI, a model that breaks the contract or an
out-of-range option fails without touching the registry. Once the version is tagged ``running``,
any failure (including Ctrl-C) tags it ``failed`` and removes partial latent tags.

Per-latent results are saved as they finish, and a rerun after a crash resumes the unfinished run
(:mod:`lexflow.tracking.checkpoint`); ``top_k`` explains only the most active latents (the rest
are skipped).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Any

from lexflow import engine, names
from lexflow.adapters.base import load_decoder
from lexflow.config import ExplainConfig, check_environment, env_seconds
from lexflow.errors import ExplainerError, TrackingError
from lexflow.explainers.base import get_explainer
from lexflow.record import ExplainResult, description_section, version_tags
from lexflow.sanitize import clean
from lexflow.tracking import checkpoint as ckpt
from lexflow.tracking import registry, runs
from lexflow.tracking.explanations import log_outputs
from lexflow.tracking.tags import VersionTags

# Explainer URI schemes that call a paid API: a dry run builds them without a key.
MLLM_SCHEMES = ("openai", "anthropic", "gemini", "ollama")


def explainer_options(config: ExplainConfig) -> dict[str, Any]:
    """What an explainer backend is built with (from_uri's options)."""
    return {"concurrency": config.concurrency, "timeout": config.timeout, "cache": config.cache,
            "grounding": config.grounding, "seed": config.seed, **config.extra}


def _version() -> str:
    from lexflow._version import __version__

    return __version__


def explain(
    model_uri: str, config: ExplainConfig | None = None, *, progress: bool = True,
    experiment: str | None = None, run_id: str | None = None, env_run: bool = True,
) -> ExplainResult:
    """Explain every selected latent of a registered model and record the results.

    The results go to a new run (in ``experiment``); under ``mlflow run``, to the run it started;
    called inside your own ``mlflow.start_run()``, to a new run nested under yours (tagged
    ``mlflow.parentRunId``, in your run's experiment; your run stays active and untouched). With
    ``run_id`` (the evaluator plugin), into that existing run, which is left open for its owner.
    ``env_run=False`` ignores ``mlflow run``'s MLFLOW_RUN_ID (explain-registry: a run per version).

    Returns the :class:`ExplainResult`; raises a :class:`lexflow.errors.LexflowError` subclass
    with a message for the user on bad input or failure.
    """
    from lexflow.signals import sigterm_raises

    config = config or ExplainConfig()
    check_environment()  # a bad LEXFLOW_* number fails now, not inside the failure handling
    with sigterm_raises():  # SIGTERM ends the run like Ctrl-C: tagged failed, with lexflow.error
        return _explain(model_uri, config, progress=progress, experiment=experiment,
                        run_id=run_id, env_run=env_run)


def _explain(model_uri: str, config: ExplainConfig, *, progress: bool, experiment: str | None,
             run_id: str | None, env_run: bool) -> ExplainResult:
    registry.check_reachable()
    explainer = get_explainer(config.explainer, explainer_options(config))
    model = registry.resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="lexflow-") as tmp:
        local, info = registry.download(model, tmp)
        decoder = load_decoder(local, info, device=config.device)
        prepared = engine.prepare(decoder, info, config)  # checks options; computes lazily
        key = ckpt.config_key(model, config)
        resume_id = None if run_id else ckpt.find_resumable(model, key, env_run=env_run)
        with runs.open_run(experiment, run_name=f"lexflow {model.name or model_uri}",
                           run_id=resume_id, into=run_id, env_run=env_run) as run:
            tags = (VersionTags(model.name, model.version, run.run_id)
                    if model.name and model.version else None)
            runs.log_params(run.run_id, {"model_uri": model_uri, **config.as_params()})
            checkpoint = ckpt.Checkpoint(run.run_id, key)
            restored = checkpoint.load()
            runs.set_run_tags(run.run_id, {
                names.RUN_TAG_MODEL_URI: model.download_uri, names.TAG_VERSION: _version(),
                names.RUN_TAG_CONFIG_KEY: key, names.RUN_TAG_OWNER: ckpt.owner_tag(),
                names.RUN_TAG_RESUMED: str(len(restored))})
            try:
                if tags:  # inside the failure handling: an interrupted begin ends as failed
                    tags.begin(explainer.uri)
                result = engine.explain_decoder(decoder, info, config, explainer,
                                                checkpoint=checkpoint, prepared=prepared,
                                                progress=progress)
                result = dataclasses.replace(
                    result, model_uri=model.uri, model_name=model.name,
                    model_version=model.version, run_id=run.run_id)
                log_outputs(run.run_id, result)
                runs.log_metrics(run.run_id, result.metrics())
                if result.status == names.STATUS_FAILED:  # nothing answered: not a result
                    raise ExplainerError(result.no_answer_message())
                if tags:
                    tags.complete(version_tags(result), description_section(result), result.status)
            except BaseException as exc:
                _record_failure(exc, run.run_id, tags, checkpoint)
                raise
    return result


def _record_failure(exc: BaseException, run_id: str, tags: VersionTags | None,
                    checkpoint: ckpt.Checkpoint) -> None:
    """Keep what finished for a rerun, tag the version failed; a lost server becomes a
    TrackingError saying what to do."""
    lost = registry.is_connection_error(exc)
    if not lost:  # keep what finished before the failure for the rerun
        try:
            checkpoint.flush()
        except Exception as flush_exc:
            print(f"lexflow: could not save the checkpoint: {flush_exc}", file=sys.stderr)
    wait = env_seconds(names.ENV_TRACKING_WAIT_S, 120.0)  # checked at the start
    back = registry.wait_for_server(wait) if lost else True
    if tags and back:
        msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        msg = clean(msg) or type(exc).__name__  # may quote model or provider text
        try:
            tags.fail(msg)
        except Exception as tag_exc:  # keep the original error in front
            print(f"lexflow: could not tag the failure: {tag_exc}", file=sys.stderr)
    if lost:
        raise TrackingError(_lost_server_message(run_id, back, wait)) from exc


def _lost_server_message(run_id: str, back: bool, wait: float) -> str:
    uri = registry.tracking_uri()
    retries = os.environ.get(names.ENV_HTTP_MAX_RETRIES,
                             registry.HTTP_DEFAULTS[names.ENV_HTTP_MAX_RETRIES])
    head = (f"The MLflow tracking server at {uri} stopped answering during run {run_id} "
            f"(each call retried {retries} times; set {names.ENV_HTTP_MAX_RETRIES} and "
            f"{names.ENV_HTTP_TIMEOUT} to change that). ")
    if back:
        return head + ("It answers again: the version is tagged failed. Run the same command "
                       "again to resume the run from its checkpoint (finished latents are kept).")
    return head + (f"It did not come back within {wait:.0f} s ({names.ENV_TRACKING_WAIT_S}), so "
                   "the version may still be tagged running. When the server is back, run the "
                   "same command again: it resumes the run from its checkpoint.")


def dry_run(model_uri: str, config: ExplainConfig | None = None, *, progress: bool = True) -> Any:
    """Decode and measure, then say what would be sent and what it would cost; send nothing.

    The requests are the engine's own (:func:`lexflow.engine.requests_for`), so they are the ones
    a run would send. Reads the registry but writes no run, tag or artifact. Returns a
    :class:`lexflow.explainers.dryrun.DryRun`.
    """
    from lexflow.explainers.dryrun import preview

    config = config or ExplainConfig()
    options = explainer_options(config)
    if config.explainer.partition(":")[0] in MLLM_SCHEMES:
        options["dry_run"] = True  # no API key needed to see the plan
    explainer = get_explainer(config.explainer, options)
    model = registry.resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="lexflow-dry-") as tmp:
        local, info = registry.download(model, tmp)
        decoder = load_decoder(local, info, device=config.device)
        prepared = engine.prepare(decoder, info, config)
        requests = engine.requests_for(decoder, info, config, prepared=prepared,
                                       progress=progress)
    return preview(model_uri, explainer, requests, prepared.indices)
