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

# --- the gate's verdict on a model version (lexflow gate ... --promote / the webhook receiver) ---
TAG_GATE_PREFIX = "lexflow.gate."
TAG_GATE_STATUS = "lexflow.gate.status"  # passed | failed
TAG_GATE_CHECKED_AT = "lexflow.gate.checked_at"  # ISO 8601, UTC
TAG_GATE_POLICY_SHA256 = "lexflow.gate.policy_sha256"  # of the policy file's bytes
TAG_GATE_FAILURES = "lexflow.gate.failures"  # every failed check, one a line, bounded
TAG_GATE_WARNINGS = "lexflow.gate.warnings"  # every warning, one a line, bounded
TAG_GATE_RUN_ID = "lexflow.gate.run_id"  # the explanation run the verdict is about
GATE_PASSED = "passed"
GATE_FAILED = "failed"

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


def latent_readback_tag(index: int, latent_dim: int) -> str:
    return f"{latent_tag(index, latent_dim)}.readback"


# --- run artifacts ---
ARTIFACT_DIR = "lexflow"
EXPLANATIONS_FILE = "lexflow/explanations.json"
REPORT_FILE = "lexflow/report.html"
TRAVERSAL_DIR = "lexflow/traversals"
EXPLANATIONS_SCHEMA = "lexflow.explanations/1"


def traversal_path(index: int, latent_dim: int, *, comparison: bool = False) -> str:
    suffix = "_comparison" if comparison else ""
    return f"{TRAVERSAL_DIR}/latent_{latent_label(index, latent_dim)}{suffix}.png"


STRIP_DIR = "lexflow/strips"  # one small PNG row per latent (the registry description shows it)
CERTAINTY_CHART = "lexflow/certainty.png"  # each item's certainty against the threshold


def strip_path(index: int, latent_dim: int) -> str:
    return f"{STRIP_DIR}/latent_{latent_label(index, latent_dim)}.png"


def animation_path(index: int, latent_dim: int) -> str:
    """The animated traversal (GIF), beside the grid."""
    return f"{TRAVERSAL_DIR}/latent_{latent_label(index, latent_dim)}.gif"


# --- metrics ---
METRIC_EXPLAINABLE_FRACTION = "explainable_fraction"
METRIC_MEAN_CERTAINTY = "mean_certainty"
METRIC_ACTIVE_LATENTS = "active_latents"
METRIC_CALLS = "explainer_calls"
METRIC_INPUT_TOKENS = "explainer_input_tokens"
METRIC_OUTPUT_TOKENS = "explainer_output_tokens"
METRIC_COST = "explainer_cost_usd"
METRIC_IMAGES = "explainer_images"  # images sent to explainers (every call's images, retries too)


def certainty_metric(index: int, latent_dim: int) -> str:
    return f"certainty.latent_{latent_label(index, latent_dim)}"


# --- the owned section of the model-version description ---
DESCRIPTION_BEGIN = "<!-- lexflow:begin (this section is written by lexflow; edits are replaced) -->"
DESCRIPTION_END = "<!-- lexflow:end -->"

# --- entry-point groups third parties register under (lexflow.plugins loads them) ---
EP_EXPLAINERS = "lexflow.explainers"  # explainer backends, by URI scheme
EP_ADAPTERS = "lexflow.adapters"  # model-flavor adapters, by flavor name

# --- metadata key in the MLmodel file ---
METADATA_KEY = "lexflow"

# --- environment variables ---
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_RUN_ID = "MLFLOW_RUN_ID"
ENV_NO_PROGRESS = "LEXFLOW_NO_PROGRESS"
ENV_WEBHOOK_SECRET = "LEXFLOW_WEBHOOK_SECRET"  # default --secret-env of python -m lexflow.webhooks

# --- crash safety, top-k and bounded retries (lexflow.tracking.checkpoint, lexflow.tracking.job) ---
TAG_TOP_K = "lexflow.top_k"  # set when only the k most active latents were explained
TAG_SKIPPED_LATENTS = "lexflow.skipped_latents"  # comma-separated labels of the skipped latents
PARTIAL_DIR = "lexflow/partial"  # per-latent checkpoints of a run (resumed after a crash)
RUN_TAG_CONFIG_KEY = "lexflow.config_key"  # hash of model version + options (lexflow.tracking.checkpoint)
RUN_TAG_OWNER = "lexflow.owner"  # {"host", "pid"} of the process running the run
RUN_TAG_HEARTBEAT = "lexflow.heartbeat"  # unix seconds of the last checkpoint
RUN_TAG_RESUMED = "lexflow.resumed"  # how many times the run was resumed
RUN_TAG_MODEL_URI = "lexflow.model_uri"  # the pinned models:/name/version the run explained
RUN_TAG_KIND = "lexflow.kind"  # "calibration" on runs that `lexflow calibrate --log` writes
METRIC_SKIPPED_LATENTS = "skipped_latents"
ENV_CHECKPOINT_INTERVAL = "LEXFLOW_CHECKPOINT_INTERVAL"  # seconds between checkpoint uploads
ENV_RESUME_STALE_S = "LEXFLOW_RESUME_STALE_S"  # heartbeat age after which another host's run is dead
ENV_TRACKING_WAIT_S = "LEXFLOW_TRACKING_WAIT_S"  # how long to wait for a lost server to record failure
# MLflow's own HTTP settings; lexflow sets bounded defaults when they are unset.
ENV_HTTP_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
ENV_HTTP_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
ENV_HTTP_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"

# --- `lexflow diff`: meanings across versions (lexflow.diff) ---
# Version tags on the candidate: lexflow.diff.<against>.<field>, where <against> names the other
# version (its alias, v<version> or m-<id>; see lexflow.diff.record.against_key).
TAG_DIFF_PREFIX = "lexflow.diff."
DIFF_FIELDS = ("against", "run_id", "summary", "same", "changed", "lost", "new", "unclear",
               "latents", "checked_at")
DIFF_DIR = "lexflow/diff"  # lexflow/diff/<against>.json on the candidate's explanation run
DIFF_SCHEMA = "lexflow.diff/1"


def diff_tag(against: str, field: str) -> str:
    """``lexflow.diff.champion.lost`` (``field`` one of :data:`DIFF_FIELDS`)."""
    if field not in DIFF_FIELDS:
        raise ValueError(f"unknown diff tag field {field!r}")
    return f"{TAG_DIFF_PREFIX}{against}.{field}"


def diff_path(against: str) -> str:
    return f"{DIFF_DIR}/{against}.json"

# --- coverage: how much of the latent space a run looked at (lexflow.coverage) ---
TAG_COVERAGE = "lexflow.coverage"  # "measured 8/8: 6 explained, ... 0 skipped[; subset top_k=2]"
METRIC_COVERAGE = "coverage"  # latents measured / latent_dim
METRIC_LATENTS_MEASURED = "latents_measured"
METRIC_LATENTS_EXPLAINED = "latents_explained"
METRIC_LATENTS_SKIPPED = "latents_skipped"
METRIC_LATENTS_INACTIVE = "latents_inactive"
METRIC_LATENTS_FAILED = "latents_failed"
