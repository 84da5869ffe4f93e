"""The ``lexflow`` command: a thin click layer over the library.

Exit codes: 0 success, 1 a failure while running, 2 bad input (options, URI, model contract),
3 finished but partial (some latents got no answer from the explainer; status ``partial``),
128 + N ended by signal N (SIGTERM: 143; the version is tagged failed).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from lexflow.config import (
    BIASES,
    ExplainConfig,
    check_environment,
    parse_explainer_options,
    parse_latents,
)
from lexflow.errors import ConfigError, LexflowError

EXIT_PARTIAL = 3  # the run finished, but some latents got no answer (lexflow.status=partial)


def parse_threshold(value: str, certainty: str) -> float:
    """A number, or ``calibrated:<file>`` written by ``lexflow calibrate --out <file>``."""
    if value.startswith("calibrated:"):
        from lexflow.calibration import load_threshold

        return load_threshold(value.split(":", 1)[1], certainty=certainty)
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"threshold must be a number in [0, 1] or calibrated:<file from lexflow calibrate>; "
            f"got {value!r}."
        ) from None


def _fail(exc: LexflowError, as_json: bool) -> None:
    from lexflow.sanitize import clean

    message = clean(str(exc)) or type(exc).__name__  # no escape sequence reaches the terminal
    if as_json:
        click.echo(json.dumps({"error": type(exc).__name__, "message": message}))
    click.echo(f"lexflow: error: {message}", err=True)
    sys.exit(exc.exit_code)


# Commands that live in their own modules, loaded only when used: name -> "module:attribute".
LAZY_COMMANDS = {
    "gate": "lexflow.gate.cli:command",
    "calibrate": "lexflow.calibration:command",
    "evaluate": "lexflow.quality.cli:command",
    "explain-registry": "lexflow.registry_scan:command",
    "diff": "lexflow.diff.cli:command",
}


class LazyGroup(click.Group):
    """A group whose heavier commands are imported on first use (keeps `lexflow --help` fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self._available().get(cmd_name)
        if target is None:
            return None
        import importlib

        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    @staticmethod
    def _available() -> dict[str, str]:
        import importlib.util

        out = {}
        for name, target in LAZY_COMMANDS.items():
            try:
                if importlib.util.find_spec(target.partition(":")[0]) is not None:
                    out[name] = target
            except ModuleNotFoundError:
                continue
        return out


@click.group(cls=LazyGroup)
@click.version_option(package_name="lexflow")
def cli() -> None:
    """Explain the latent variables of generative models in the MLflow Model Registry."""
    import os

    from lexflow.tracking.registry import HTTP_DEFAULTS

    for key, value in HTTP_DEFAULTS.items():  # bounded MLflow retries for this process
        os.environ.setdefault(key, value)


def explain_options(f: Any) -> Any:
    opts = [
        click.option("--explainer", default="measure", show_default=True,
                     help="Explainer URI: measure (offline measurements, not an MLLM), "
                          "openai:/<model>, ..."),
        click.option("--samples", default=5, show_default=True, type=int,
                     help="Answers asked per latent (the measure explainer uses one per row)."),
        click.option("--steps", default=5, show_default=True, type=int,
                     help="Frames per traversal (>= 2)."),
        click.option("--span", default=3.0, show_default=True, type=float,
                     help="Traversal from -span to +span prior standard deviations."),
        click.option("--rows", default=4, show_default=True, type=int,
                     help="Base samples (grid rows) per latent."),
        click.option("--latents", default="all", show_default=True,
                     help="'all', a list like 0,3,5 or a range like 0-4."),
        click.option("--bias", default="auto", show_default=True, type=click.Choice(BIASES),
                     help="Inductive bias (auto reads the model's lexflow metadata)."),
        click.option("--threshold", default="0.5", show_default=True,
                     help="Certainty below which the answer is 'No clear explanation'; or calibrated:<file> "
                          "written by `lexflow calibrate --out`."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Seed of the base samples."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when present), cpu, cuda, cuda:N."),
        click.option("--batch-size", default=256, show_default=True, type=int,
                     help="Codes decoded per forward call."),
        click.option("--concurrency", default=16, show_default=True, type=int,
                     help="Explainer requests in flight at once (MLLM explainers)."),
        click.option("--timeout", default=60.0, show_default=True, type=float,
                     help="Seconds per explainer call before retry/failure."),
        click.option("--certainty", default="bow", show_default=True,
                     help="Answer agreement: bow (bag-of-words cosine), semantic, semantic:<model path>."),
        click.option("--grounding/--no-grounding", default=False, show_default=True,
                     help="Put measured evidence in MLLM prompts and flag contradicting answers."),
        click.option("--readback", default="auto", show_default=True,
                     type=click.Choice(["auto", "off"]),
                     help="auto: a model with an encoder reads each traversal back, and a latent's "
                          "certainty is agreement x read-back; off: agreement alone."),
        click.option("--cache", default=None,
                     help="Answer cache directory ('none' disables; default ~/.cache/lexflow)."),
        click.option("--experiment", default=None,
                     help="MLflow experiment name (ignored under `mlflow run`)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
        click.option("--directions", default=None, type=int,
                     help="Diffusion models: h-space directions to explain (0 or unset: the "
                          "model's metadata, else 5)."),
        click.option("--edit-prompt", "edit_prompt", default=None,
                     help="Stable Diffusion: the edit prompt of the directions and guidance."),
        click.option("--image", default=None,
                     help="Diffusion models: image(s) to invert (comma-separated paths or a "
                          "directory); unset: sampled noise."),
        click.option("--ddim-steps", "ddim_steps", default=None, type=int,
                     help="Diffusion models: DDIM steps (0 or unset: the model's, else 100)."),
        click.option("--dtype", default="float32", show_default=True,
                     type=click.Choice(["float32", "float16", "bfloat16"]),
                     help="Diffusion models: precision (float16 needs CUDA)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _explainer_extras(items: tuple[str, ...]) -> dict[str, str]:
    """``-o key=value`` pairs for the explainer (lexflow.config.parse_explainer_options)."""
    try:
        return parse_explainer_options(items)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--explainer-option") from exc


@cli.command()
@click.argument("model_uri")
@explain_options
@click.option("--explainer-option", "-o", "explainer_option", multiple=True, metavar="KEY=VALUE",
              help="An explainer option (temperature, max_attempts, base_url, ...); repeatable.")
@click.option("--dry-run", is_flag=True,
              help="Decode and measure, print the prompts, images and estimated cost; send nothing.")
@click.option("--top-k", "top_k", type=click.IntRange(min=0), default=None,
              help="Explain only the K most active latents (by measured change); the other active "
                   "ones are recorded as skipped. 0: all.")
def explain(model_uri: str, explainer: str, samples: int, steps: int, span: float, rows: int,
            latents: str, bias: str, threshold: str, seed: int, device: str, batch_size: int,
            concurrency: int, timeout: float, certainty: str, grounding: bool, cache: str | None,
            experiment: str | None, as_json: bool, no_progress: bool,
            explainer_option: tuple[str, ...] = (), dry_run: bool = False,
            top_k: int | None = None, directions: int | None = None,
            edit_prompt: str | None = None, image: str | None = None,
            ddim_steps: int | None = None, dtype: str = "float32",
            readback: str = "auto") -> None:
    """Explain the latents of MODEL_URI (models:/name/N, models:/name@alias, models:/m-<id>)."""
    from lexflow.signals import Terminated
    from lexflow.tracking.job import explain as run_explain

    try:
        check_environment()
        config = config_from_options(
            explainer=explainer, samples=samples, steps=steps, span=span, rows=rows,
            latents=latents, bias=bias, threshold=threshold, seed=seed, device=device,
            batch_size=batch_size, concurrency=concurrency, timeout=timeout, certainty=certainty,
            grounding=grounding, cache=cache, explainer_option=explainer_option, top_k=top_k,
            directions=directions, edit_prompt=edit_prompt, image=image, ddim_steps=ddim_steps,
            dtype=dtype, readback=readback)
        if dry_run:
            from lexflow.tracking.job import dry_run as plan_run

            plan = plan_run(model_uri, config, progress=not no_progress)
            click.echo(json.dumps(plan.to_dict()) if as_json else plan.text())
            return
        # MLflow prints "View run ..." links on stdout when a run ends: keep stdout pure JSON.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = run_explain(model_uri, config, progress=not no_progress, experiment=experiment)
    except LexflowError as exc:
        _fail(exc, as_json)
        return
    except Terminated as exc:  # SIGTERM: the version is tagged failed; exit like a killed process
        click.echo(f"lexflow: error: {exc}; the run and the version are marked failed.", err=True)
        sys.exit(exc.exit_code)
    except SystemExit as exc:  # raised by model code (loading it): never lexflow's exit code
        from lexflow.errors import DecodeError

        _fail(DecodeError(f"The model's code called sys.exit({exc.code!r}) while it was loaded or "
                          "run; model code may not end lexflow."), as_json)
        return
    asked = [r for r in result.latents if r.status != "inactive"]
    failed = [r for r in asked if r.status == "failed"]
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        if failed:
            sys.exit(EXIT_PARTIAL)
        return
    click.echo(f"\n{result.model_uri}  run {result.run_id}  explainer {result.explainer}")
    width = max(len(r.label) for r in result.latents) if result.latents else 2
    backs = any(r.readback is not None for r in result.latents)  # a model with an encoder
    click.echo(f"{'latent':>{max(6, width)}}  certainty  " + ("read-back  " if backs else "")
               + "status     explanation")
    for r in result.latents:
        text = r.explanation or "No clear explanation"
        back = ("" if not backs else "      n/a  " if r.readback is None
                else f"{r.readback:9.2f}  ")
        click.echo(f"{r.label:>{max(6, width)}}  {r.certainty:9.2f}  {back}{r.status:<9}  {text}")
        if r.status == "failed" and r.failures:
            click.echo(f"{'':>{max(6, width)}}  failures: {'; '.join(r.failures)[:300]}")
    if result.skipped:
        click.echo(f"{'':>{max(6, width)}}  skipped ({result.skip_reason()}): "
                   + ", ".join(r.label for r in result.skipped))
    click.echo(f"\nexplainable: {result.explainable_fraction:.0%} of {result.latent_dim} · "
               f"mean certainty {result.mean_certainty:.2f} · coverage: {result.coverage.describe()}")
    if failed:
        click.echo(f"partial: {len(failed)} of {len(asked)} latents got no answer (failures above); "
                   f"exit code {EXIT_PARTIAL}.", err=True)
        sys.exit(EXIT_PARTIAL)


def config_from_options(*, explainer: str, samples: int, steps: int, span: float, rows: int,
                        latents: str, bias: str, threshold: str, seed: int, device: str,
                        batch_size: int, concurrency: int, timeout: float, certainty: str,
                        grounding: bool, cache: str | None,
                        explainer_option: tuple[str, ...] = (), top_k: int | None = None,
                        directions: int | None = None, edit_prompt: str | None = None,
                        image: str | None = None, ddim_steps: int | None = None,
                        dtype: str = "float32", readback: str = "auto",
                        **_: Any) -> ExplainConfig:
    """The ExplainConfig of `lexflow explain`'s options (explain-registry builds it the same way)."""
    return ExplainConfig(
        explainer=explainer, samples=samples, steps=steps, span=span, rows=rows,
        latents=parse_latents(latents), bias=bias,
        threshold=parse_threshold(threshold, certainty), seed=seed,
        device=device, batch_size=batch_size, concurrency=concurrency, timeout=timeout,
        certainty=certainty, grounding=grounding, cache=cache,
        extra=_explainer_extras(explainer_option), top_k=top_k or None,
        directions=directions or None, edit_prompt=edit_prompt or None, image=image or None,
        ddim_steps=ddim_steps or None, dtype=dtype, readback=readback,
    )


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON (for machines).")
def plugins_command(as_json: bool) -> None:
    """List the installed explainers, adapters and biases and the package providing each.

    A plugin that fails to load is listed with its error (the command still succeeds).
    """
    import json

    from lexflow.plugin_list import installed_plugins

    found = installed_plugins()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in found], indent=2))
        return
    width = max(len(p.name) for p in found)
    sources = {p: f"{p.distribution} {p.version}".strip() + (" (built-in)" if p.builtin else "")
               for p in found}
    swidth = max(len(v) for v in sources.values())
    for kind, heading in (("explainer", "explainers"), ("adapter", "adapters"),
                          ("bias", "biases")):
        click.echo(f"{heading}:")
        for p in (p for p in found if p.kind == kind):
            click.echo(f"  {p.name:<{width}}  {sources[p]:<{swidth}}  {p.target}".rstrip())
            if p.error:
                click.echo(f"  {'':<{width}}  error: {p.error}")
    broken = sum(p.error is not None for p in found)
    if broken:
        click.echo(f"{broken} plugin(s) failed to load or are not used; see the errors above.")


def main() -> None:
    cli(prog_name="lexflow")


if __name__ == "__main__":
    main()
