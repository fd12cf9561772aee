"""The REST front end: TensorFlow Serving's HTTP API on aiohttp, over the core.

    api            RestApi: URL routing, timeouts, status, metadata, predict / classify / regress
    bodies         the request body: its limit, gzip and deflate undone off the event loop
    json_codec     JSON parsing and writing with TensorFlow Serving's number and error formats
    json_tensors   predict's row and columnar tensors ({"instances": ...} / {"inputs": ...}), b64
    json_examples  classify / regress: JSON tf.Examples in, results out
"""
