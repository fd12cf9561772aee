"""Describe a SavedModel's signatures the way `saved_model_cli show --all` does.

The same information is printed by

    saved_model_cli show --dir models/tf_mlp/1 --all

which also lists the ops and the concrete functions; this module prints only
the SignatureDefs (inputs and outputs with dtype, shape and tensor name, and
the method name), reading saved_model.pb directly so it is fast and needs no
graph loading. TensorFlow's internal `__saved_model_init_op` entry is left out.
"""

from __future__ import annotations

import pathlib

from tf_mlp import contract, layout
from tf_mlp.errors import ExportError

_INTERNAL_SIGNATURES = ("__saved_model_init_op",)


def read_signature_defs(saved_model_dir) -> dict:
    """{tag-set string: {signature name: SignatureDef}} of the SavedModel in saved_model_dir."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = pathlib.Path(saved_model_dir) / layout.SAVED_MODEL_FILE
    if not path.is_file():
        raise ExportError(f"{saved_model_dir}: not a SavedModel directory (no saved_model.pb)")
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    return {
        ", ".join(meta_graph.meta_info_def.tags): {
            name: signature
            for name, signature in meta_graph.signature_def.items()
            if name not in _INTERNAL_SIGNATURES
        }
        for meta_graph in saved_model.meta_graphs
    }


def _dtype_name(dtype: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype)


def _shape_text(tensor_shape) -> str:
    if tensor_shape.unknown_rank:
        return "unknown_rank"
    return "(" + ", ".join(str(dimension.size) for dimension in tensor_shape.dim) + ")"


def _tensor_lines(kind: str, key: str, tensor_info) -> list[str]:
    return [
        f"    {kind}['{key}'] tensor_info:",
        f"        dtype: {_dtype_name(tensor_info.dtype)}",
        f"        shape: {_shape_text(tensor_info.tensor_shape)}",
        f"        name: {tensor_info.name}",
    ]


def describe_signatures(saved_model_dir) -> str:
    """The signatures of the SavedModel, in saved_model_cli's layout."""
    lines = []
    for tags, signatures in sorted(read_signature_defs(saved_model_dir).items()):
        lines += ["", f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:"]
        for name in sorted(signatures):
            signature = signatures[name]
            lines += ["", f"signature_def['{name}']:"]
            lines.append("  The given SavedModel SignatureDef contains the following input(s):")
            for key in sorted(signature.inputs):
                lines += _tensor_lines("inputs", key, signature.inputs[key])
            lines.append("  The given SavedModel SignatureDef contains the following output(s):")
            for key in sorted(signature.outputs):
                lines += _tensor_lines("outputs", key, signature.outputs[key])
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines).lstrip("\n")


def signature_summary(saved_model_dir) -> dict:
    """{signature: {"method", "inputs": {name: {"dtype", "shape"}}, "outputs": {...}}} for the serve tag-set.

    Plain JSON types, for the model card and for programs.
    """
    definitions = read_signature_defs(saved_model_dir)
    signatures = definitions.get(contract.SERVE_TAG)
    if signatures is None:
        raise ExportError(f"{saved_model_dir}: the SavedModel has no 'serve' tag-set")

    def tensors(infos) -> dict:
        return {
            key: {"dtype": _dtype_name(info.dtype), "shape": [dimension.size for dimension in info.tensor_shape.dim]}
            for key, info in sorted(infos.items())
        }

    return {
        name: {
            "method": signature.method_name,
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }
        for name, signature in sorted(signatures.items())
    }
