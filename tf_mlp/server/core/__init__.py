"""The server's core, shared by both front ends: models, versions, loading and running requests.

    status         ServingError: canonical code + message, TensorFlow Serving's HTTP table, the deadline message,
                   shown(): how much of a client's value a message may quote
    limits         RequestBudget: what one request may decode to, charged before anything is allocated
    tensors        numpy <-> TensorProto as TensorFlow Serving parses and writes them; declared_bytes
    servable       one loaded version: SignatureDefs and the session that runs them
    tflite_runner  a version's model.tflite run by TensorFlow Lite (--prefer_tflite_model)
    versions       one model's versions: policy, polling, load and unload
    inference      Predict / Classify / Regress / MultiInference plans and response protos
    batching       direct and batching runners (--enable_batching)
    warmup         a version's warmup requests, replayed at load
    manager        ServerCore: config, models, labels, lookups by ModelSpec or by name/version/label, status, metadata

Imports go one way: status, limits, tensors <- servable <- inference <- batching, warmup <- manager.
Nothing here imports the REST or gRPC front ends.
"""
