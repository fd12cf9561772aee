#!/usr/bin/env bash
# Serve tf_mlp with serving/'s config files, on the best server available:
#   1. tensorflow_model_server, if it is on the PATH;
#   2. else the official Docker image, if `docker info` works;
#   3. else the embedded server, `tf-mlp serve` (same flags, same API).
#
# Usage: serving/run.sh [more tensorflow_model_server flags...]
# Environment: MODELS_DIR (default <repo>/models, what `tf-mlp export` writes),
#   MODEL_CONFIG (default serving/models.config), REST_PORT (8501),
#   GRPC_PORT (8500), TF_SERVING_IMAGE (see docker-compose.yml).
#
# Extra arguments are tensorflow_model_server flags, passed on to whichever
# server starts (tf-mlp serve accepts all of them; the few that mean nothing to
# it are named in a one-line warning).
#
# The server reads MODEL_CONFIG itself (every 60 s), so `tf-mlp rollout`,
# which changes the running server and rewrites that file to match, and hand
# edits both reach it. Its base_path models/tf_mlp is relative to the server's
# working directory: / in the container, where MODELS_DIR is mounted at
# /models; outside Docker, the repository's root, or for another MODELS_DIR a
# directory whose models/ links to it ($TMPDIR/tf-mlp-serving/<hash>/), so
# relative paths among the extra flags are relative to that directory too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
models_dir=$(realpath -m "${MODELS_DIR:-$repo/models}")
config_file=$(realpath -m "${MODEL_CONFIG:-$here/models.config}")
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

server_directory() {
  # Where the config's relative base_path (models/...) names MODELS_DIR.
  if [ "$models_dir" = "$(realpath -m "$repo/models")" ]; then
    echo "$repo"
    return
  fi
  # One directory per models directory, so servers of different directories never share it.
  local directory
  directory="${TMPDIR:-/tmp}/tf-mlp-serving/$(printf '%s' "$models_dir" | cksum | cut -d ' ' -f 1)"
  mkdir -p "$directory"
  ln -sfn "$models_dir" "$directory/models"
  echo "$directory"
}

local_flags() {
  echo "--model_config_file=$config_file"
  echo "--batching_parameters_file=$here/batching.config"
  echo "--monitoring_config_file=$here/monitoring.config"
  echo "--port=$grpc_port"
  echo "--rest_api_port=$rest_port"
}

if [ ! -f "$config_file" ]; then
  echo "run.sh: no model config at $config_file (MODEL_CONFIG)" >&2
  exit 1
fi

if command -v tensorflow_model_server > /dev/null; then
  echo "run.sh: starting tensorflow_model_server (models in $models_dir, config $config_file)" >&2
  mapfile -t flags < <(local_flags)
  cd "$(server_directory)"
  exec tensorflow_model_server "${flags[@]}" "${common_flags[@]}" "$@"
elif command -v docker > /dev/null && docker info > /dev/null 2>&1; then
  echo "run.sh: starting $image in Docker (models in $models_dir)" >&2
  # The config's directory is mounted, not the file: a rewrite replaces the file (a new inode), which a
  # file mount would never show the container.
  exec docker run --rm --init -w / \
    -p "127.0.0.1:$grpc_port:8500" -p "127.0.0.1:$rest_port:8501" \
    -v "$models_dir:/models:ro" -v "$here:/config:ro" -v "$(dirname "$config_file"):/model-config:ro" \
    "$image" \
    --model_config_file="/model-config/$(basename "$config_file")" \
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
  cd "$(server_directory)"
  exec "${tf_mlp[@]}" serve "${flags[@]}" "${common_flags[@]}" "$@"
fi
