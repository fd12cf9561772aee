"""Rolling a new version out on a running model server: a gate, a canary, a promotion, a rollback.

TensorFlow Serving gives the mechanism (version labels in the model config,
and ModelService's HandleReloadConfigRequest to change it); this package ties
it together through the server's public API only, so it works the same
against tensorflow_model_server and `tf-mlp serve`.

Modules: config_file (the ModelServerConfig file, rewritten in step),
serving_api (the gRPC calls), state (labels and versions as the server has
them), session (the lock, and sending a change), gate (evaluation and the
paired test), report (gate_report.json and .md beside the export), steps
(gate, canary, promote, rollback, status), cli (`tf-mlp rollout`), drill (a
rehearsal under load that counts failed requests).
"""
