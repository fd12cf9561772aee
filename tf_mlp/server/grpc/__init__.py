"""The gRPC front end: TensorFlow Serving's services, over the core.

    services   PredictionService and ModelService (tensorflow-serving-api's generated servicers)
    profiler   tensorflow.ProfilerService on the same port (--enable_profiler)
"""
