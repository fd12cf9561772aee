#!/usr/bin/env bash
# Serve tf_mlp with serving/'s config files, on the best server available:
#   1. tensorflow_model_server, if it is on the PATH;
#   2. else the official Docker image, if `docker info` works;
#   3. else the embedded server, `tf-mlp serve` (same flags, same API).
#
# Usage: serving/run.sh [more tensorflow_model_server flags...]
# Environment: MODELS_DIR (default <repo>/models, what `tf-mlp export` writes),
#   REST_PORT (8501), GRPC_PORT (8500), TF_SERVING_IMAGE (see docker-compose.yml).
#
# Extra arguments are tensorflow_model_server flags, passed on to whichever
# server starts (tf-mlp serve accepts all of them; the few that mean nothing to
# it are named in a one-line warning).
#
# models.config names base_path models/tf_mlp, relative to the server's
# working directory (/ in the container, where models/ is mounted); for
# servers outside Docker a copy with base_path under MODELS_DIR is written to
# $TMPDIR/tf-mlp-serving/models.config (re-read every 60 s like the original,
# but edits go to serving/models.config: run.sh again to pick them up).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
models_dir=$(realpath -m "${MODELS_DIR:-$repo/models}")
rest_port=${REST_PORT:-8501}
grpc_port=${GRPC_PORT:-8500}
image=${TF_SERVING_IMAGE:-tensorflow/serving:2.21.0}

# The flags every server gets (docker-compose.yml lists the same ones).
common_flags=(
  --model_config_file_poll_wait_seconds=60
  --file_system_poll_wait_seconds=1
  --allow_version_labels_for_unavailable_models=true
  --enable_batching=true
  --rest_api_timeout_in_ms=30000
)

local_config() {
  # One copy per models directory, so servers of different directories never share it.
  local directory
  directory="${TMPDIR:-/tmp}/tf-mlp-serving/$(printf '%s' "$models_dir" | cksum | cut -d ' ' -f 1)"
  mkdir -p "$directory"
  sed "s#base_path: \"models/#base_path: \"$models_dir/#" "$here/models.config" > "$directory/models.config"
  echo "$directory/models.config"
}

local_flags() {
  echo "--model_config_file=$(local_config)"
  echo "--batching_parameters_file=$here/batching.config"
  echo "--monitoring_config_file=$here/monitoring.config"
  echo "--port=$grpc_port"
  echo "--rest_api_port=$rest_port"
}

if command -v tensorflow_model_server > /dev/null; then
  echo "run.sh: starting tensorflow_model_server (models in $models_dir)" >&2
  mapfile -t flags < <(local_flags)
  exec tensorflow_model_server "${flags[@]}" "${common_flags[@]}" "$@"
elif command -v docker > /dev/null && docker info > /dev/null 2>&1; then
  echo "run.sh: starting $image in Docker (models in $models_dir)" >&2
  exec docker run --rm --init -w / \
    -p "127.0.0.1:$grpc_port:8500" -p "127.0.0.1:$rest_port:8501" \
    -v "$models_dir:/models:ro" -v "$here:/config:ro" \
    "$image" \
    --model_config_file=/config/models.config \
    --batching_parameters_file=/config/batching.config \
    --monitoring_config_file=/config/monitoring.config \
    "${common_flags[@]}" "$@"
else
  if command -v tf-mlp > /dev/null; then
    tf_mlp=(tf-mlp)
  elif [ -x "$repo/.venv/bin/tf-mlp" ]; then
    tf_mlp=("$repo/.venv/bin/tf-mlp")
  else
    echo "run.sh: no tensorflow_model_server, no working Docker and no tf-mlp; pip install -e $repo" >&2
    exit 1
  fi
  echo "run.sh: no tensorflow_model_server and no working Docker; starting the embedded server (tf-mlp serve)" >&2
  mapfile -t flags < <(local_flags)
  exec "${tf_mlp[@]}" serve "${flags[@]}" "${common_flags[@]}" "$@"
fi
