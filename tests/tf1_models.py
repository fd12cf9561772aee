"""Small SavedModels laid out like TensorFlow Serving's test models, built here (nothing is copied).

- `half_plus_two`: a TF1 graph saved with SavedModelBuilder. Variables
  a=0.5, b=2, c=3; a string placeholder `tf_example` [?] parsed as
  tf.Examples with features x [1] and x2 [1] (default 0); signatures
  `serving_default` (predict x -> y, x and y [?,1]), `regress_x_to_y`,
  `regress_x_to_y2`, `regress_x2_to_y3` (regress on x2 -> 0.5*x2+3) and
  `classify_x_to_y` (scores y), y = 0.5*x+2, y2 = 0.5*x+3; an asset file and
  a main op that reads its name, so loading runs a real init op.
- `half_plus_three`: an older-style TF1 graph: an unshaped float placeholder
  x, y = 0.5*x+3, `serving_default` and a regress signature.
- `half_plus_two_tf2`: a native TF2 tf.Module saved with tf.saved_model.save;
  every signature's method_name is then tensorflow/serving/predict, even the
  classify and regress ones, which is why TensorFlow Serving leaves the
  method-name check off by default.
- `half_plus_two_tflite`: a TFLite flatbuffer with one signature x -> y;
  `add_signature_metadata` stores SignatureDefs in its metadata, where
  TensorFlow Serving reads a TFLite model's signatures from.
"""

from __future__ import annotations

import pathlib
import tempfile

import tensorflow as tf

v1 = tf.compat.v1


def _signature(inputs: dict, outputs: dict, method: str):
    return v1.saved_model.signature_def_utils.build_signature_def(
        {alias: v1.saved_model.utils.build_tensor_info(tensor) for alias, tensor in inputs.items()},
        {alias: v1.saved_model.utils.build_tensor_info(tensor) for alias, tensor in outputs.items()},
        method)


def half_plus_two(export_dir: pathlib.Path) -> pathlib.Path:
    export_dir = pathlib.Path(export_dir)
    graph = tf.Graph()
    with tempfile.TemporaryDirectory() as scratch, graph.as_default(), v1.Session(graph=graph) as session:
        asset_source = pathlib.Path(scratch) / "foo.txt"
        asset_source.write_text("asset-file-contents")
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        c = v1.Variable(3.0, name="c")
        a2 = v1.Variable(0.5, name="a2")
        c2 = v1.Variable(3.0, name="c2")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(serialized, {
            "x": v1.io.FixedLenFeature([1], tf.float32),
            "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        })
        x = tf.identity(features["x"], name="x")
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        x2 = tf.identity(features["x2"], name="x2")
        y3 = tf.identity(a2 * x2 + c2, name="y3")
        # The asset's file name is assigned by the main op, as a model reading a vocabulary would.
        asset_path = tf.constant(str(asset_source))
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_path)
        filename = v1.Variable("", name="filename_tensor", trainable=False, collections=[])
        session.run(v1.global_variables_initializer())
        predict = _signature({"x": x}, {"y": y}, v1.saved_model.PREDICT_METHOD_NAME)
        builder = v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session, [v1.saved_model.SERVING],
            signature_def_map={
                "serving_default": predict,
                "regress_x_to_y": _signature({"inputs": serialized}, {"outputs": y},
                                             v1.saved_model.REGRESS_METHOD_NAME),
                "regress_x_to_y2": _signature({"inputs": serialized}, {"outputs": y2},
                                              v1.saved_model.REGRESS_METHOD_NAME),
                "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, v1.saved_model.REGRESS_METHOD_NAME),
                "classify_x_to_y": _signature({"inputs": serialized}, {"scores": y},
                                              v1.saved_model.CLASSIFY_METHOD_NAME),
            },
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(filename.assign("foo.txt")))
        builder.save()
    return export_dir


def half_plus_three(export_dir: pathlib.Path) -> pathlib.Path:
    export_dir = pathlib.Path(export_dir)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(3.0, name="b")
        x = v1.placeholder(tf.float32, name="x")
        y = tf.identity(a * x + b, name="y")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session, [v1.saved_model.SERVING],
            signature_def_map={
                "serving_default": _signature({"x": x}, {"y": y}, v1.saved_model.PREDICT_METHOD_NAME),
                "regress": _signature({"inputs": x}, {"outputs": y}, v1.saved_model.REGRESS_METHOD_NAME),
            })
        builder.save()
    return export_dir


_FEATURES = {"x": tf.io.FixedLenFeature([1], tf.float32),
             "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}


class _HalfPlusTwo(tf.Module):
    def __init__(self):
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(2.0)
        self.c = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_xy(self, inputs):
        return {"outputs": self.a * tf.io.parse_example(inputs, _FEATURES)["x"] + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_xy(self, inputs):
        return {"scores": self.a * tf.io.parse_example(inputs, _FEATURES)["x"] + self.b}


def half_plus_two_tf2(export_dir: pathlib.Path) -> pathlib.Path:
    model = _HalfPlusTwo()
    tf.saved_model.save(model, str(export_dir), signatures={
        "serving_default": model.predict, "regress_x_to_y": model.regress_xy, "classify_x_to_y": model.classify_xy})
    return pathlib.Path(export_dir)


def half_plus_two_tflite(version_dir: pathlib.Path) -> pathlib.Path:
    """version_dir/model.tflite: serving_default x [?,1] -> y = 0.5*x+2."""
    model = _HalfPlusTwo()
    function = tf.function(lambda x: {"y": model.a * x + model.b},
                           input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    concrete = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    version_dir = pathlib.Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.tflite").write_bytes(converter.convert())
    return version_dir


def add_signature_metadata(version_dir: pathlib.Path, signature_defs: dict) -> None:
    """Store SignatureDefs in version_dir/model.tflite's `signature_defs_metadata`, as TensorFlow's
    signature_def_utils.set_signature_defs does: a flexbuffer map of key -> serialized SignatureDef."""
    import flatbuffers
    from flatbuffers import flexbuffers

    # TFLite's flatbuffer object API; TensorFlow has no public one for editing a model's metadata.
    from tensorflow.lite.python import schema_py_generated as schema

    path = pathlib.Path(version_dir) / "model.tflite"
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    entries = flexbuffers.Builder()
    with entries.Map():
        for key, definition in signature_defs.items():
            # The C++ writer stores the bytes as a flexbuffer String; Python's builder takes str, and a small
            # SignatureDef's serialization is plain ASCII.
            entries.Key(key)
            entries.String(definition.SerializeToString().decode("ascii"))
    buffer = schema.BufferT()
    buffer.data = list(entries.Finish())
    model.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = "signature_defs_metadata"
    metadata.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [metadata]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def model_base(root: pathlib.Path, build, versions=(123,)) -> pathlib.Path:
    """root/<versions>: the model built by `build` once per version (a two-versions variant with (123, 124))."""
    for version in versions:
        build(pathlib.Path(root) / str(version))
    return pathlib.Path(root)
