"""`python -m lexflow.demo register|where`: the steps of `make demo`."""

from __future__ import annotations

import click


@click.group()
def demo() -> None:
    """The lexflow demo: a beta-TCVAE on dSprites-like shapes."""


@demo.command()
@click.option("--name", default="lexflow-demo-vae", show_default=True)
def register(name: str) -> None:
    """Build (or load the shipped) demo model and register it."""
    from lexflow.demo.register import register as do_register

    name, version, created = do_register(name)
    click.echo(f"{'Registered' if created else 'Already registered'}: models:/{name}/{version}")


@demo.command()
@click.option("--name", default="lexflow-demo-vae", show_default=True)
def where(name: str) -> None:
    """Say where the results of the last explanation are."""
    import mlflow
    from mlflow import MlflowClient

    from lexflow import names

    c = MlflowClient()
    mv = max(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    tags = mv.tags
    run_id = tags.get(names.TAG_RUN_ID, "?")
    d = (
        max(
            (
                int(k.split(".")[2])
                for k in tags
                if k.startswith(names.TAG_LATENT_PREFIX) and k.count(".") == 2
            ),
            default=0,
        )
        + 1
    )
    click.echo("")
    click.echo(f"Model version   models:/{name}/{mv.version}  (lexflow.status={tags.get(names.TAG_STATUS)})")
    click.echo(f"Run             {run_id}  in {mlflow.get_tracking_uri()}")
    for i in range(d):
        text = tags.get(names.latent_tag(i, d))
        if text is not None:
            cert = tags.get(names.latent_certainty_tag(i, d), "")
            click.echo(f"  latent {names.latent_label(i, d)}  {cert:>5}  {text}")
    art = c.get_run(run_id).info.artifact_uri if run_id != "?" else "?"
    click.echo(f"Report          {art}/{names.REPORT_FILE}")
    click.echo(f"Grids           {art}/{names.TRAVERSAL_DIR}/")
    click.echo(f"Open the UI     make ui   then http://127.0.0.1:5000/#/models/{name}/versions/{mv.version}")


if __name__ == "__main__":
    demo()
