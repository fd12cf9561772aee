"""Predict, Classify and Regress on a Servable, with TensorFlow Serving's checks and messages.

Each request becomes a Plan (signature, checked input arrays, outputs wanted)
before anything runs, so the same plan can run directly, through the batcher,
or as a warmup replay; the results are then shaped into the response protos
(predict_util.cc, classifier.cc, regressor.cc and util.cc upstream).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2, regression_pb2

from tf_mlp.contract import (
    CLASSIFY_CLASSES_OUTPUT,
    CLASSIFY_INPUT,
    CLASSIFY_METHOD_NAME,
    CLASSIFY_SCORES_OUTPUT,
    PREDICT_METHOD_NAME,
    REGRESS_METHOD_NAME,
    REGRESS_OUTPUT,
    SERVING_SIGNATURE,
)
from tf_mlp.server.core import tensors
from tf_mlp.server.core.limits import RequestBudget, string_bytes
from tf_mlp.server.core.servable import Servable, Signature, stack_strings
from tf_mlp.server.core.status import Code, ServingError, invalid_argument, shown

_METHOD_NAMES = (PREDICT_METHOD_NAME, CLASSIFY_METHOD_NAME, REGRESS_METHOD_NAME)
"""What Predict accepts under --enable_signature_method_name_check, in the order its message names them."""


@dataclasses.dataclass
class Plan:
    servable: Servable
    signature: Signature
    inputs: dict
    """alias -> ndarray, checked against the signature."""
    output_aliases: list
    """The outputs to return, in order."""

    @property
    def batch_size(self) -> int:
        first = next(iter(self.inputs.values()))
        return first.shape[0] if first.ndim else 0


def predict_signature(servable: Servable, signature_name: str) -> Signature:
    """The signature a Predict request names, checked as predict_util.cc checks it before reading any input."""
    name = signature_name or SERVING_SIGNATURE
    signature = servable.signature(name)
    if signature is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{shown(name)}" not found.')
    if servable.method_name_check and signature.method_name not in _METHOD_NAMES:
        raise ServingError(
            Code.INTERNAL,
            f"Expected prediction signature method_name to be one of {{{', '.join(_METHOD_NAMES)}}}. "
            f"Was: {signature.method_name}",
        )
    return signature


def plan_predict(servable: Servable, signature_name: str, inputs: dict, output_filter=()) -> Plan:
    signature = predict_signature(servable, signature_name)
    servable.check_inputs(signature, inputs)
    aliases = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {shown(alias)} "
                f"Outputs expected to be in the set {{{','.join(signature.outputs)}}}."
            )
        if alias in aliases:
            raise invalid_argument(f"duplicate output tensor alias: {shown(alias)}")
        aliases.append(alias)
    return Plan(servable, signature, inputs, aliases or list(signature.outputs))


def plan_predict_request(servable: Servable, request, budget: RequestBudget) -> Plan:
    """A gRPC PredictRequest (or a warmup record's) planned with every check that needs no tensor first: the
    signature, the aliases, each tensor's declared size against the budget. Only then are tensors decoded."""
    signature = predict_signature(servable, request.model_spec.signature_name)
    servable.check_input_names(signature, request.inputs)
    for alias, proto in request.inputs.items():
        budget.charge(alias, tensors.declared_bytes(proto, alias))
    inputs = {alias: tensors.to_numpy(proto, alias) for alias, proto in request.inputs.items()}
    return plan_predict(servable, request.model_spec.signature_name, inputs, request.output_filter)


def _check_method(servable: Servable, signature: Signature, method: str, kind: str) -> None:
    """--enable_signature_method_name_check (off by default, as in TensorFlow Serving)."""
    if servable.method_name_check and signature.method_name != method:
        raise invalid_argument(f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")


def classify_outputs(servable: Servable, signature: Signature) -> list:
    """PreProcessClassification: the checks, then the output aliases to fetch (classes, scores)."""
    _check_method(servable, signature, CLASSIFY_METHOD_NAME, "classification")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUT not in signature.inputs:
        raise invalid_argument(f"No classification inputs found in SignatureDef: {_short(signature.definition)}")
    aliases = [alias for alias in (CLASSIFY_CLASSES_OUTPUT, CLASSIFY_SCORES_OUTPUT) if alias in signature.outputs]
    if not aliases:
        raise invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSIFY_CLASSES_OUTPUT}" or '
            f'"{CLASSIFY_SCORES_OUTPUT}". Signature was: {_short(signature.definition)}')
    return aliases


def regress_outputs(servable: Servable, signature: Signature) -> list:
    """PreProcessRegression: the checks, then the output alias to fetch."""
    _check_method(servable, signature, REGRESS_METHOD_NAME, "regression")
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if CLASSIFY_INPUT not in signature.inputs:
        raise invalid_argument(f"No regression inputs found in SignatureDef: {_short(signature.definition)}")
    if REGRESS_OUTPUT not in signature.outputs:
        raise invalid_argument(f"No regression outputs found in SignatureDef: {_short(signature.definition)}")
    return [REGRESS_OUTPUT]


def _short(definition) -> str:
    """SignatureDef::ShortDebugString, so the message stays on one line."""
    return text_format.MessageToString(definition, as_one_line=True)


def _examples_signature(servable: Servable, signature_name: str) -> Signature:
    name = signature_name or SERVING_SIGNATURE
    signature = servable.signature(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {shown(name)}")
    return signature


def plan_classify(servable: Servable, signature_name: str, serialized_examples: np.ndarray) -> Plan:
    signature = _examples_signature(servable, signature_name)
    return _plan_examples(servable, signature, serialized_examples, classify_outputs(servable, signature))


def plan_regress(servable: Servable, signature_name: str, serialized_examples: np.ndarray) -> Plan:
    signature = _examples_signature(servable, signature_name)
    return _plan_examples(servable, signature, serialized_examples, regress_outputs(servable, signature))


def _plan_examples(servable, signature, serialized_examples, aliases) -> Plan:
    if len(serialized_examples) == 0:
        raise invalid_argument("Input is empty.")
    inputs = {CLASSIFY_INPUT: serialized_examples}
    servable.check_inputs(signature, inputs)
    return Plan(servable, signature, inputs, aliases)


def serialized_examples(input_proto, budget: RequestBudget) -> np.ndarray:
    """InputToSerializedExampleTensor: one serialized tf.Example per example, the context prepended.

    The context is copied into every example, so a large context and many
    small examples multiply: the total is charged to budget first.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = input_proto.example_list.examples
        budget.charge("examples", string_bytes(len(examples), input_proto.ByteSize()))
        values = [example.SerializeToString() for example in examples]
    elif kind == "example_list_with_context":
        examples = input_proto.example_list_with_context.examples
        context = input_proto.example_list_with_context.context
        budget.charge("examples", string_bytes(len(examples), input_proto.ByteSize())
                      + len(examples) * context.ByteSize())
        context = context.SerializeToString()
        # Concatenated serializations parse as the merge of the two messages.
        values = [context + example.SerializeToString() for example in examples]
    else:
        values = []
    if not values:
        raise invalid_argument("Input is empty.")
    return stack_strings(values)


def selected(plan: Plan, outputs: dict) -> dict:
    return {alias: outputs[alias] for alias in plan.output_aliases}


def fill_model_spec(model_spec, servable: Servable, signature_name: str) -> None:
    """MakeModelSpec: name, version and the signature actually used."""
    model_spec.name = servable.model_name
    model_spec.version.value = servable.version
    model_spec.signature_name = signature_name or SERVING_SIGNATURE


def predict_response(plan: Plan, outputs: dict) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, plan.servable, plan.signature.name)
    for alias, array in selected(plan, outputs).items():
        response.outputs[alias].CopyFrom(tensors.to_proto(array))
    return response


def _check_matrix(array: np.ndarray, dtype: int, alias: str, examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {tensors.shape_string(array.shape)}")
    if tensors.dtype_of(array) != dtype:
        raise invalid_argument(
            f"Expected {alias} Tensor of {types_pb2.DataType.Name(dtype)}. "
            f"Got: {types_pb2.DataType.Name(tensors.dtype_of(array))}"
        )
    if array.shape[0] != examples:
        raise invalid_argument(f"Expected {alias} output batch size of {examples}. Got: {array.shape[0]}")


def classification_result(plan: Plan, outputs: dict) -> classification_pb2.ClassificationResult:
    """PostProcessClassificationResult over a plan's outputs (alias -> ndarray)."""
    return _classifications(outputs, plan.batch_size)


def _classifications(outputs: dict, examples: int) -> classification_pb2.ClassificationResult:
    classes = outputs.get(CLASSIFY_CLASSES_OUTPUT)
    scores = outputs.get(CLASSIFY_SCORES_OUTPUT)
    if classes is not None:
        _check_matrix(classes, types_pb2.DT_STRING, CLASSIFY_CLASSES_OUTPUT, examples)
    if scores is not None:
        _check_matrix(scores, types_pb2.DT_FLOAT, CLASSIFY_SCORES_OUTPUT, examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    result = classification_pb2.ClassificationResult()
    num_classes = (classes if classes is not None else scores).shape[1]
    for index in range(examples):
        classifications = result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = classes[index, column].decode("utf-8", "replace")
            if scores is not None:
                entry.score = float(scores[index, column])
    return result


def regression_result(plan: Plan, outputs: dict) -> regression_pb2.RegressionResult:
    """PostProcessRegressionResult over a plan's outputs (alias -> ndarray)."""
    return _regressions(outputs[REGRESS_OUTPUT], plan.batch_size)


def _regressions(values: np.ndarray, examples: int) -> regression_pb2.RegressionResult:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise invalid_argument(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                               f"{tensors.shape_string(values.shape)}")
    if values.shape[0] != examples:
        raise invalid_argument(f"Input batch size did not match output batch size: {examples} vs. {values.shape[0]}")
    if tensors.dtype_of(values) != types_pb2.DT_FLOAT:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: "
                               f"{types_pb2.DataType.Name(tensors.dtype_of(values))}")
    result = regression_pb2.RegressionResult()
    for value in values.tolist():
        result.regressions.add(value=value)
    return result


@dataclasses.dataclass
class MultiPlan:
    """A MultiInferenceRequest checked against one servable: its tasks run in one session run."""

    servable: Servable
    tasks: list
    """(task, signature, output aliases) per task, in request order."""
    examples: np.ndarray

    def run(self) -> inference_pb2.MultiInferenceResponse:
        """TensorFlowMultiInferenceRunner::Infer: feed the examples to every task's input, fetch once."""
        feeds = {signature.inputs[CLASSIFY_INPUT].name: self.examples for _, signature, _ in self.tasks}
        fetch_names = sorted({signature.outputs[alias].name for _, signature, aliases in self.tasks
                              for alias in aliases})
        response = inference_pb2.MultiInferenceResponse()
        if not self.tasks:
            return response
        values = dict(zip(fetch_names, self.servable.run_tensors(self.tasks[0][1], feeds, fetch_names)))
        count = len(self.examples)
        for task, signature, aliases in self.tasks:
            outputs = {alias: values[signature.outputs[alias].name] for alias in aliases}
            result = response.results.add()
            if task.method_name == CLASSIFY_METHOD_NAME:
                result.classification_result.CopyFrom(_classifications(outputs, count))
            else:
                result.regression_result.CopyFrom(_regressions(outputs[REGRESS_OUTPUT], count))
            fill_model_spec(result.model_spec, self.servable, task.model_spec.signature_name)
        return response


def plan_multi_inference(servable: Servable, request, budget: RequestBudget) -> MultiPlan:
    """The checks of multi_inference.cc, in its order and with its messages."""
    model_name = ""
    signature_names = set()
    tasks = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        model_name = model_name or task.model_spec.name
        if task.model_spec.name != model_name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.signature_name or SERVING_SIGNATURE
        if name in signature_names:
            raise invalid_argument(f"Duplicate evaluation of signature: {shown(name)}")
        signature_names.add(name)
        signature = servable.signature(name)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {shown(name)}")
        if task.method_name == CLASSIFY_METHOD_NAME:
            aliases = classify_outputs(servable, signature)
        elif task.method_name == REGRESS_METHOD_NAME:
            aliases = regress_outputs(servable, signature)
        else:
            raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {shown(task.method_name)}")
        tasks.append((task, signature, aliases))
    examples = serialized_examples(request.input, budget)
    for _, signature, _ in tasks:
        servable.check_inputs(signature, {CLASSIFY_INPUT: examples})
    return MultiPlan(servable, tasks, examples)
