#!/usr/bin/env bash
# pre-promotion.sh: explain a candidate model version, gate it, and promote it when it passes.
# The same two commands as the GitHub Actions and GitLab CI examples, for any CI or a terminal:
#
#   MLFLOW_TRACKING_URI=http://mlflow:5000 ./pre-promotion.sh models:/vae/4 [policy.yaml] [alias]
#
# Environment: MLFLOW_TRACKING_URI (required), LEXFLOW_EXPLAINER (default: measure), and the
# provider key of an MLLM explainer (e.g. OPENAI_API_KEY). Keys are read from the environment by
# lexflow; never pass them as arguments.
# Exit code: 0 passed and promoted, 1 the explanation run or the gate failed, 2 bad input.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 MODEL_URI [POLICY_FILE] [ALIAS]   (e.g. $0 models:/vae/4 policy.yaml champion)" >&2
  exit 2
fi
model_uri=$1
policy=${2:-docs/policy.example.yaml}
alias=${3:-champion}
explainer=${LEXFLOW_EXPLAINER:-measure}
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the tracking server holding the model}"

echo "== explaining $model_uri with $explainer"
lexflow explain "$model_uri" --explainer "$explainer" --json > explanation.json

echo "== gating $model_uri with $policy"
# exit 0: passed (alias set), 1: failed (every failed check is printed), 2: bad input
lexflow gate "$model_uri" --policy "$policy" --promote "$alias"
