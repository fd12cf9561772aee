# TensorFlow Serving's official image with serving/'s configuration (models.config, batching.config,
# monitoring.config) and the flags of serving/docker-compose.yml. Build from the repository's root:
#
#   docker build -f deploy/docker/serving.Dockerfile -t REGISTRY/tf-mlp-serving:2.21.0 .
#   docker run --rm -p 127.0.0.1:8500:8500 -p 127.0.0.1:8501:8501 -v "$PWD/models:/models:ro" \
#       REGISTRY/tf-mlp-serving:2.21.0                                 # the models mounted
#   docker build -f deploy/docker/serving.Dockerfile --target with-models -t REGISTRY/tf-mlp-serving:models .
#   docker run --rm -p 127.0.0.1:8501:8501 REGISTRY/tf-mlp-serving:models   # models/tf_mlp baked in
#
# The tag is the tensorflow-serving-api version of requirements.lock (tests/test_deploy.py checks it). The
# digest could not be looked up where this file was written (no Docker engine, no registry access); pin it
# where you build: docker buildx imagetools inspect tensorflow/serving:2.21.0 --format '{{json .Manifest.Digest}}'
FROM tensorflow/serving:2.21.0 AS configured
COPY serving/models.config serving/batching.config serving/monitoring.config /config/
# models.config's base_path (models/tf_mlp) is relative to the working directory: /models/tf_mlp.
WORKDIR /
# Appended to the image's entry point, which passes --port=8500 --rest_api_port=8501 (and --model_name and
# --model_base_path, ignored once --model_config_file is given). The same flags as docker-compose.yml.
CMD ["--model_config_file=/config/models.config", \
     "--model_config_file_poll_wait_seconds=60", \
     "--file_system_poll_wait_seconds=1", \
     "--allow_version_labels_for_unavailable_models=true", \
     "--enable_batching=true", \
     "--batching_parameters_file=/config/batching.config", \
     "--monitoring_config_file=/config/monitoring.config", \
     "--rest_api_timeout_in_ms=30000"]

# The exported versions baked into the image (the export is a few MB).
FROM configured AS with-models
COPY models/tf_mlp /models/tf_mlp

# The default target: configuration only, models mounted at /models.
FROM configured
