"""What one request may cost, counted before anything is allocated.

TensorFlow Serving decodes a request's tensors as they come
(`Tensor::FromProto`), so a 90-byte PredictRequest that declares a [2^27]
double tensor with no values makes it allocate 1 GiB of zeros, and four such
aliases 4 GiB. Here each request gets a RequestBudget of
`--max_request_tensor_bytes`; every tensor is charged what it will decode to
(elements times item size; strings their bytes plus STRING_ELEMENT_BYTES each,
what numpy and TensorFlow hold per string) before it is allocated, all the
request's tensors together, so a request over the budget is refused with
RESOURCE_EXHAUSTED having cost the server nothing but its own bytes.
"""

from __future__ import annotations

from tf_mlp.server.core.status import resource_exhausted, shown

STRING_ELEMENT_BYTES = 64
"""What one string element costs besides its bytes: numpy's pointer and Python's bytes header (8 + 33),
TensorFlow's tstring (24), rounded up."""
BUDGET_FLAG = "--max_request_tensor_bytes"


def size_text(count: int) -> str:
    """1536 -> '1.5 KiB': sizes in messages, in the unit a reader takes in at once."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count} bytes" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def string_bytes(count: int, payload: int) -> int:
    """What `count` strings holding `payload` bytes in all decode to."""
    return count * STRING_ELEMENT_BYTES + payload


class RequestBudget:
    """The bytes one request's tensors may decode to, all together; charged before each allocation."""

    def __init__(self, limit: int | None):
        self.limit = limit
        """None: no limit (a model's own warmup records, which the server trusts)."""
        self.used = 0

    def charge(self, what: str, nbytes: int) -> None:
        """Count nbytes more for `what` (an input alias, 'examples', ...); RESOURCE_EXHAUSTED past the limit."""
        self.check(what, nbytes)
        self.used += nbytes

    def check(self, what: str, nbytes: int) -> None:
        """RESOURCE_EXHAUSTED if nbytes more would pass the limit (counting nothing: for a way that may fail)."""
        if self.limit is not None and self.used + nbytes > self.limit:
            raise resource_exhausted(
                f"the request's tensors would decode to {size_text(self.used + nbytes)} (counted up to "
                f"{shown(what)}), more than the {size_text(self.limit)} one request may use ({BUDGET_FLAG})")
