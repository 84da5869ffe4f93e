#!/bin/sh
# The image's entry point: `docker run lexflow:gpu explain models:/vae/3` runs `lexflow explain ...`,
# and a full command (`docker run lexflow:gpu python -m lexflow explain ...`, which is what
# `mlflow run` with docker_env appends to `docker run`) runs as given. Kubernetes jobs set the
# container command themselves and bypass this script.
set -e
if [ "$#" -eq 0 ]; then
    exec lexflow --help
fi
case "$1" in
    -*) exec lexflow "$@" ;;
esac
if command -v "$1" >/dev/null 2>&1; then
    exec "$@"
fi
exec lexflow "$@"
