"""One loaded model version: its SignatureDefs and a session that runs them by tensor name.

As TensorFlow Serving's SavedModelBundle, a version is the MetaGraph tagged
`serve`, loaded by TensorFlow's session-based SavedModel loader into its own
graph and `Session`; a request runs the signature's input and output tensors
by name, exactly what TensorFlow Serving's `Session::Run` feeds and fetches.
So TF1 and TF2 SavedModels load (or are refused) as they are there, a shape
the graph can compute is computed, and an error comes back as the session's
own message. With `prefer_tflite_model`, a version directory holding
`model.tflite` is served by TensorFlow Lite instead (tflite_runner.py).

A Servable is immutable once loaded. A request holds the version it uses
(`hold`/`release`, through ServerCore.serving); an unload `retire`s it, and
its session is closed as soon as the last request holding it ends, so an
unload never fails a request in flight and never leaves a session for the
garbage collector.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from tf_mlp import contract, layout
from tf_mlp.server.core import tensors
from tf_mlp.server.core.status import Code, ServingError, from_tensorflow_error, invalid_argument, one_line, shown

log = logging.getLogger(__name__)

TFLITE_FILE = "model.tflite"
PRIVATE_CALLABLE_API = "_make_callable_from_options"
"""tf.compat.v1.Session's private method that runs by tensor name as the C++ Session does (see SessionRunner)."""
MAX_CACHED_CALLABLES = 64
"""Distinct (feeds, fetches) combinations kept ready per version; others run uncached."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    """Graph tensor name, e.g. serving_default_images:0."""
    dtype: int
    """tensorflow DataType enum value."""
    shape: tuple | None
    """Dims with None for unknown sizes; None for an unknown rank."""


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict
    """alias -> TensorSpec, aliases sorted."""
    outputs: dict
    """alias -> TensorSpec, aliases sorted."""
    definition: meta_graph_pb2.SignatureDef


@dataclasses.dataclass(frozen=True)
class LoadSettings:
    """What the server's options say about loading a version."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    prefer_tflite_model: bool = False
    method_name_check: bool = False

    @classmethod
    def from_options(cls, options) -> "LoadSettings":
        intra_op_threads, inter_op_threads = options.thread_counts()  # --tensorflow_session_parallelism too
        return cls(
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            prefer_tflite_model=options.prefer_tflite_model,
            method_name_check=options.enable_signature_method_name_check,
        )


def _tensor_specs(tensor_infos) -> dict:
    return {
        alias: TensorSpec(info.name, info.dtype, tensors.shape_of(info.tensor_shape))
        for alias, info in sorted(tensor_infos.items())
    }


def read_signature_defs(path) -> dict:
    """name -> SignatureDef of the SavedModel's serve meta graph (NOT_FOUND with the C++ loader's messages)."""
    saved_model_file = pathlib.Path(path) / layout.SAVED_MODEL_FILE
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(saved_model_file.read_bytes())
    except OSError:
        raise ServingError(
            Code.NOT_FOUND, f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
        ) from None
    for meta_graph in saved_model.meta_graphs:
        if contract.SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ServingError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {contract.SERVE_TAG} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
    )


class SessionRunner:
    """A SavedModel's serve MetaGraph in its own graph and session; runs tensors by name, thread-safe."""

    def __init__(self, path, settings: LoadSettings):
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=settings.intra_op_threads,
                                          inter_op_parallelism_threads=settings.inter_op_threads)
        self._session = tf.compat.v1.Session(graph=tf.Graph(), config=config)
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [contract.SERVE_TAG], str(path))
        except (tf.errors.OpError, ValueError, RuntimeError, OSError, KeyError) as error:
            self._session.close()
            raise from_tensorflow_error(error) from None
        self.signature_defs = dict(meta_graph.signature_def)
        self._callables = {}
        self._lock = threading.Lock()

    def _callable(self, feed_names: tuple, fetch_names: tuple):
        key = (feed_names, fetch_names)
        runner = self._callables.get(key)
        if runner is None:
            # Session.make_callable with feeds goes through Session.run, whose Python-side check refuses a fed
            # shape the signature does not declare; the C++ Session (TensorFlow Serving's) accepts and computes
            # it. A callable made from CallableOptions is the C++ Session::MakeCallable, with no such check,
            # and skips the per-call feed/fetch bookkeeping of Session.run. It is a private method: should a
            # TensorFlow release drop it, requests go through the public Session.run instead (see _run_public).
            make = getattr(self._session, PRIVATE_CALLABLE_API, None)
            if make is None:
                _warn_public_fallback()
                return functools.partial(self._run_public, feed_names, list(fetch_names))
            runner = make(config_pb2.CallableOptions(feed=list(feed_names), fetch=list(fetch_names)))
            with self._lock:
                if len(self._callables) < MAX_CACHED_CALLABLES:
                    self._callables[key] = runner
        return runner

    def _run_public(self, feed_names: tuple, fetch_names: list, *values) -> list:
        """The same run through Session.run, which refuses a fed shape the placeholder does not declare."""
        try:
            return self._session.run(fetch_names, dict(zip(feed_names, values)))
        except ValueError as error:  # "Cannot feed value of shape (1, 27, 27) for Tensor ..., which has shape ..."
            raise invalid_argument(one_line(str(error))) from None

    def run(self, signature, feeds: dict, fetch_names: list) -> list:
        """Run with feeds (tensor name -> ndarray); the fetched tensors as ndarrays, in order."""
        names = tuple(feeds)
        try:
            runner = self._callable(names, tuple(fetch_names))
            results = runner(*(feeds[name] for name in names))
        except tf.errors.OpError as error:
            raise from_tensorflow_error(error) from None
        return [_as_array(value) for value in results]

    def close(self) -> None:
        self._session.close()


class Servable:
    """A loaded version of a model; `run` is thread-safe and may be called concurrently."""

    def __init__(self, model_name: str, version: int, path, signature_defs: dict, runner,
                 method_name_check: bool = False):
        self.model_name = model_name
        self.version = version
        self.path = pathlib.Path(path)
        self.signature_defs = signature_defs
        self.method_name_check = method_name_check
        """--enable_signature_method_name_check: refuse signatures whose method_name is not the API's."""
        self._runner = runner
        self.signatures = {
            name: Signature(name, definition.method_name, _tensor_specs(definition.inputs),
                            _tensor_specs(definition.outputs), definition)
            for name, definition in sorted(signature_defs.items())
        }
        self._holds = 0  # requests using this version now
        self._retired = False  # unloaded: close once no request holds it
        self._closed = False
        self._hold_lock = threading.Lock()

    # ---- lifetime: a request holds the version while it uses it; an unload closes it after the last one --

    def hold(self) -> bool:
        """Keep the session open for a request until release(); False if the version is already closed."""
        with self._hold_lock:
            if self._closed:
                return False
            self._holds += 1
            return True

    def release(self) -> None:
        with self._hold_lock:
            self._holds -= 1
            close = self._retired and self._holds == 0 and not self._closed
            self._closed = self._closed or close
        if close:
            self._runner.close()

    def retire(self) -> None:
        """The version is unloaded: close its session now if no request holds it, else when the last one ends."""
        with self._hold_lock:
            self._retired = True
            close = self._holds == 0 and not self._closed
            self._closed = self._closed or close
        if close:
            self._runner.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    def load(cls, model_name: str, version: int, path, settings: LoadSettings | None = None) -> "Servable":
        settings = settings or LoadSettings()
        path = pathlib.Path(path)
        if settings.prefer_tflite_model and (path / TFLITE_FILE).is_file():
            from tf_mlp.server.core.tflite_runner import TfLiteRunner

            runner = TfLiteRunner(path / TFLITE_FILE)
        else:
            read_signature_defs(path)  # the C++ loader's NOT_FOUND messages before TensorFlow's own
            runner = SessionRunner(path, settings)
        return cls(model_name, version, path, runner.signature_defs, runner, settings.method_name_check)

    @property
    def id(self) -> str:
        """ServableId::DebugString, as TensorFlow Serving logs it."""
        return f"{{name: {self.model_name} version: {self.version}}}"

    def signature(self, name: str) -> Signature | None:
        return self.signatures.get(name or contract.SERVING_SIGNATURE)

    def check_input_names(self, signature: Signature, sent) -> None:
        """The checks of predict_util.cc and saved_model::GetInputValues that need only the aliases sent, with
        their messages: run before any tensor is decoded, so an alias the signature lacks costs nothing."""
        expected = set(signature.inputs)
        sent = set(sent)
        defaults = signature.definition.defaults
        if len(sent) > len(expected) or (len(sent) < len(expected) and not defaults):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{_names(sent)}}}) != len({{{_names(expected)}}}). "
                f"Sent extra: {{{_names(sent - expected)}}}. "
                f"Missing but required: {{{_names(expected - sent)}}}."
            )
        for alias, spec in signature.inputs.items():
            if alias not in sent and alias not in defaults:
                raise invalid_argument(
                    f"Signature input alias: {alias}(feed name: {spec.name}) not found in request and no default "
                    f"value provided. Inputs expected to be in the request {{{_names(sent)}}}, or default "
                    f"input alias set: {_names(defaults)}")
        if sent - expected:
            raise invalid_argument(f"Inputs contains invalid name. Used request inputs: "
                                   f"{_names(sent & expected)}, request input: {_names(sent)}")

    def check_inputs(self, signature: Signature, inputs: dict) -> None:
        """Check inputs (alias -> ndarray) as predict_util.cc and saved_model::GetInputValues do, with their
        messages; an input left out that the signature has a default for is added to `inputs`.

        Shapes are not checked: as in TensorFlow Serving, the graph computes
        any shape it can, and refuses the others with the session's message.
        The dtype message is the one TensorFlow Serving's Session::Run gives.
        """
        self.check_input_names(signature, inputs)
        for alias in signature.inputs:
            if alias not in inputs:
                inputs[alias] = tensors.to_numpy(signature.definition.defaults[alias], alias)
        for index, (alias, spec) in enumerate(signature.inputs.items()):
            check_dtype(index, inputs[alias], spec.dtype)

    def run(self, signature: Signature, inputs: dict, output_aliases=None) -> dict:
        """Run the signature on checked inputs (alias -> ndarray); the outputs asked for (all by default)."""
        aliases = list(signature.outputs) if output_aliases is None else list(output_aliases)
        feeds = {signature.inputs[alias].name: array for alias, array in inputs.items()}
        results = self.run_tensors(signature, feeds, [signature.outputs[alias].name for alias in aliases])
        return dict(zip(aliases, results))

    def run_tensors(self, signature: Signature, feeds: dict, fetch_names: list) -> list:
        """Run by graph tensor names (MultiInference feeds one tensor to several signatures' inputs).

        A run holds the version itself, so that a session is never closed under a run whose request has
        already given up (its deadline passed while the run went on in the thread pool).
        """
        if not self.hold():
            raise ServingError(Code.UNAVAILABLE, f"{self.id} was unloaded before the request ran; retry")
        try:
            return self._runner.run(signature, feeds, fetch_names)
        finally:
            self.release()


@functools.cache
def _warn_public_fallback() -> None:
    log.warning("tf.compat.v1.Session.%s is missing from this TensorFlow: models run through Session.run, which "
                "refuses fed shapes their signatures do not declare", PRIVATE_CALLABLE_API)


def _as_array(value) -> np.ndarray:
    """A fetched value as an ndarray: a scalar output comes back as a numpy scalar, or bytes for a string."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bytes):
        array = np.empty((), dtype=object)  # np.asarray would make an 'S' array and strip trailing NULs
        array[()] = value
        return array
    return np.asarray(value)


def _names(aliases) -> str:
    """Aliases as TensorFlow Serving lists them in a message (sorted, comma-separated), cut at shown()'s limit."""
    return shown(",".join(sorted(aliases)))


def check_dtype(index: int, array: np.ndarray, dtype: int) -> None:
    if tensors.dtype_of(array) != dtype:
        raise invalid_argument(
            f"Expects arg[{index}] to be {tensors.dtype_name(dtype)} but "
            f"{tensors.dtype_name(tensors.dtype_of(array))} is provided"
        )


def stack_strings(values) -> np.ndarray:
    """A 1-D object array of bytes (np.array would make a fixed-width 'S' array and strip NULs)."""
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array
