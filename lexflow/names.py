"""Every tag name, artifact path, metric name and environment variable lexflow uses, declared once.

These are contracts: CI gates, dashboards and people read them. Change them only with the README.
"""

from __future__ import annotations

# --- model-version tags (every key under "lexflow.", every value at most 5,000 characters) ---
TAG_PREFIX = "lexflow."
TAG_STATUS = "lexflow.status"
TAG_RUN_ID = "lexflow.run_id"
TAG_VERSION = "lexflow.version"
TAG_EXPLAINER = "lexflow.explainer"
TAG_EXPLAINABLE_FRACTION = "lexflow.explainable_fraction"
TAG_ERROR = "lexflow.error"
TAG_LATENT_PREFIX = "lexflow.latent."
TAG_VALUE_MAX = 5000

STATUS_RUNNING = "running"
STATUS_COMPLETE = "complete"
STATUS_FAILED = "failed"
STATUS_PARTIAL = "partial"  # finished, but some latents' explainer calls failed (listed per latent)

NO_CLEAR_EXPLANATION = "No clear explanation"


def latent_width(latent_dim: int) -> int:
    """Digits used for latent indices: two, or as many as the largest index needs."""
    return max(2, len(str(max(latent_dim - 1, 0))))


def latent_label(index: int, latent_dim: int) -> str:
    """'03' for latent 3 of 10; '117' for latent 117 of 512."""
    return f"{index:0{latent_width(latent_dim)}d}"


def latent_tag(index: int, latent_dim: int) -> str:
    return f"{TAG_LATENT_PREFIX}{latent_label(index, latent_dim)}"


def latent_certainty_tag(index: int, latent_dim: int) -> str:
    return f"{latent_tag(index, latent_dim)}.certainty"


# --- run artifacts ---
ARTIFACT_DIR = "lexflow"
EXPLANATIONS_FILE = "lexflow/explanations.json"
REPORT_FILE = "lexflow/report.html"
TRAVERSAL_DIR = "lexflow/traversals"
EXPLANATIONS_SCHEMA = "lexflow.explanations/1"


def traversal_path(index: int, latent_dim: int, *, comparison: bool = False) -> str:
    suffix = "_comparison" if comparison else ""
    return f"{TRAVERSAL_DIR}/latent_{latent_label(index, latent_dim)}{suffix}.png"


# --- metrics ---
METRIC_EXPLAINABLE_FRACTION = "explainable_fraction"
METRIC_MEAN_CERTAINTY = "mean_certainty"
METRIC_ACTIVE_LATENTS = "active_latents"
METRIC_CALLS = "explainer_calls"
METRIC_INPUT_TOKENS = "explainer_input_tokens"
METRIC_OUTPUT_TOKENS = "explainer_output_tokens"
METRIC_COST = "explainer_cost_usd"


def certainty_metric(index: int, latent_dim: int) -> str:
    return f"certainty.latent_{latent_label(index, latent_dim)}"


# --- the owned section of the model-version description ---
DESCRIPTION_BEGIN = "<!-- lexflow:begin (this section is written by lexflow; edits are replaced) -->"
DESCRIPTION_END = "<!-- lexflow:end -->"

# --- metadata key in the MLmodel file ---
METADATA_KEY = "lexflow"

# --- environment variables ---
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_RUN_ID = "MLFLOW_RUN_ID"
ENV_NO_PROGRESS = "LEXFLOW_NO_PROGRESS"
