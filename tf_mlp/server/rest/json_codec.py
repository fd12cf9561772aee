"""JSON in and out, as TensorFlow Serving's REST API reads and writes it (json_tensor.cc).

Parsing: orjson first (fast); a body it refuses is parsed again by Python's
json module, which also accepts what TensorFlow Serving's RapidJSON does and
orjson does not (`NaN`, `Infinity`, `-Infinity`, bytes that are not UTF-8
inside strings, kept as bytes), and whose failures are reported with
RapidJSON's messages: `JSON Parse error: Invalid value. at offset: 0`.

Writing: orjson with numpy arrays serialized natively (float32 as the
shortest text that reads back as the same float32, as TensorFlow Serving's
WriteDecimal does); NaN and infinities, which orjson cannot write, are
written as the `NaN`, `Infinity`, `-Infinity` tokens TensorFlow Serving uses.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import orjson
from google.protobuf import json_format

from tf_mlp.server.core.limits import BUDGET_FLAG, RequestBudget, size_text
from tf_mlp.server.core.status import ECHO_LIMIT, invalid_argument, resource_exhausted

MAX_DEPTH = 1024
"""orjson's nesting limit; deeper documents are refused."""

# Python json message prefix -> RapidJSON's GetParseError_En text.
_PARSE_MESSAGES = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Extra data", "The document root must not be followed by other values."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid control character", "Invalid encoding in string."),
)


def _innermost_container(text: str, position: int) -> str:
    """'{' or '[': the innermost container open at position (to name the missing delimiter)."""
    stack, in_string, escaped = [], False, False
    for character in text[:position]:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            stack.append(character)
        elif character in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "{"


def _parse_error(text: str, error: json.JSONDecodeError) -> Exception:
    offset = len(text[: error.pos].encode("utf-8", "surrogateescape"))
    if not text.strip():
        message = "The document is empty."
    elif error.msg.startswith("Expecting ',' delimiter"):
        closing = "}" if _innermost_container(text, error.pos) == "{" else "]"
        member = "an object member" if closing == "}" else "an array element"
        message = f"Missing a comma or '{closing}' after {member}."
    else:
        message = next((ours for prefix, ours in _PARSE_MESSAGES if error.msg.startswith(prefix)),
                       "Unspecific syntax error.")
    return invalid_argument(f"JSON Parse error: {message} at offset: {offset}")


# What the parsed document holds per JSON token, in bytes (64-bit CPython 3.11 and orjson, measured): a pointer
# for every value; a float object; a str object; a list; a dict. Small ints and short repeated keys are shared.
_VALUE_BYTES, _FLOAT_BYTES, _STRING_BYTES, _LIST_BYTES, _OBJECT_BYTES = 8, 24, 48, 64, 184


def parsed_bytes(body: bytes) -> int:
    """About what the parsed body takes in memory, from counts of its commas, decimal points, quotes, brackets and
    braces (C-speed scans, nothing parsed): 8 bytes per small integer, 32 per decimal, ~290 per {"b64": ...}
    object (190 measured). Integers above 256 take 28 bytes more than counted (at most 7 per body byte);
    commas, quotes and brackets inside strings are counted as if they were structure."""
    return (_VALUE_BYTES * (body.count(b",") + 1) + _FLOAT_BYTES * body.count(b".")
            + _STRING_BYTES * (body.count(b'"') // 2) + _LIST_BYTES * body.count(b"[")
            + _OBJECT_BYTES * body.count(b"{"))


def parse(body: bytes, budget: RequestBudget | None = None) -> dict:
    """The request's JSON object; INVALID_ARGUMENT with TensorFlow Serving's message otherwise.

    With a budget, a body whose parsed document would take more than the
    budget's limit (checked, not charged: the tensors are charged on top) is
    refused with RESOURCE_EXHAUSTED before it is parsed: 11 MB of
    `{"b64": ""}` objects parse to 190 MB of Python objects.
    """
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    if budget is not None and budget.limit is not None and parsed_bytes(body) > budget.limit:
        raise resource_exhausted(f"the request body would parse to about {size_text(parsed_bytes(body))} of JSON "
                                 f"values, more than the {size_text(budget.limit)} one request may use ({BUDGET_FLAG})")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "recursion limit" in str(error).lower():
            raise invalid_argument(
                f"JSON Parse error: Nesting deeper than {MAX_DEPTH} levels at offset: {error.pos}") from None
        text = body.decode("utf-8", "surrogateescape")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as slow_error:
            raise _parse_error(text, slow_error) from None
        except RecursionError:
            raise invalid_argument(f"JSON Parse error: Nesting deeper than {MAX_DEPTH} levels at offset: 0") from None
        except ValueError:
            # Python refuses integers of more than sys.get_int_max_str_digits() digits (a ValueError, not a
            # JSONDecodeError); RapidJSON refuses them too, as numbers too big for a double.
            too_long = re.search(rb"[0-9]{1000,}", body)
            raise invalid_argument("JSON Parse error: Number too big to be stored in double. at offset: "
                                   f"{too_long.start() if too_long else 0}") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {value_to_string(document)} Is not object")
    return document


def type_name(value) -> str:
    """JsonTypeString: the RapidJSON type of a parsed value."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def value_to_string(value) -> str:
    """JsonValueToString: a parsed value as RapidJSON's PrettyWriter writes it, for error messages.

    Only the first ECHO_LIMIT characters are written (then shown()'s
    ellipsis): the encoder is lazy, so echoing part of a 5 MiB document costs
    what the part costs, not what the document does.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float):
        text = repr(value)
        return text if ("." in text or "e" in text or "n" in text) else text + ".0"
    pieces, length = [], 0
    try:
        # With an indent, iterencode yields the text piece by piece as it walks the value.
        for piece in _PRETTY.iterencode(value):
            pieces.append(piece)
            length += len(piece)
            if length > ECHO_LIMIT:
                return "".join(pieces)[:ECHO_LIMIT] + "..."
    except (TypeError, ValueError, RecursionError):
        return f"(a JSON {type_name(value)} too deeply nested to show)"
    return "".join(pieces)


_PRETTY = json.JSONEncoder(indent=4, ensure_ascii=False)


def error_body(message: str) -> bytes:
    # A message may quote request bytes that are not UTF-8 (kept as surrogate
    # escapes when parsed); JSON cannot carry them, so they become U+FFFD.
    text = message.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return orjson.dumps({"error": text}, option=orjson.OPT_INDENT_2)


def _plain(value):
    """Python values json.dumps can write, float32 kept at float32's shortest text."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.vectorize(lambda item: float(str(item)), otypes=[object])(value).tolist() if value.size else []
        return value.tolist()
    if isinstance(value, np.floating):
        return float(str(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def dumps(document, *, finite: bool = True) -> bytes:
    """Serialize a response: dicts, lists, str, C-contiguous numpy arrays and numpy scalars.

    finite=False (some float output holds NaN or an infinity) takes the slow
    path that writes those as NaN / Infinity / -Infinity instead of orjson's null.
    """
    if finite:
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_plain(document), allow_nan=True, separators=(",", ":")).encode()


def proto_json(message) -> bytes:
    """A response proto as TensorFlow Serving prints it: field names kept, defaults included."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1
    ).encode()
