"""A request's body as the REST API reads it: at most --rest_api_max_request_bytes, gzip and deflate undone.

aiohttp would decompress a body on the event loop, and answer a body that
is not the gzip it claims with a 500; here the server reads the bytes as
sent (aiohttp's own decompression is off) and undoes the Content-Encoding
itself, on the thread pool when the body is not small, stopping as soon as
the output passes the body limit, so a small gzip bomb costs no more than a
body at the limit. Any other encoding is refused with a 400 naming it.
"""

from __future__ import annotations

import zlib

from tf_mlp.server.core.status import Code, ServingError, invalid_argument, shown

# Content-Encoding -> zlib's wbits: gzip's header, or zlib's (RFC 9110's "deflate"; a raw stream is tried too).
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")


class BodyTooLarge(ServingError):
    """RESOURCE_EXHAUSTED, answered 413 (Payload Too Large) rather than the code's 429."""

    def __init__(self, limit: int):
        super().__init__(Code.RESOURCE_EXHAUSTED,
                         f"Request body is larger than the limit of {limit} bytes (--rest_api_max_request_bytes)")

    @property
    def http_status(self) -> int:
        return 413


def encoding_of(headers) -> str:
    """The request's Content-Encoding, lower case ('' when none); INVALID_ARGUMENT for one the server cannot undo."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _IDENTITY and encoding not in _DECODERS:
        raise invalid_argument(f"Content-Encoding {shown(encoding)} is not supported: send the body as it is, or "
                               "with gzip or deflate")
    return encoding if encoding not in _IDENTITY else ""


def decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """The body with its Content-Encoding undone; RESOURCE_EXHAUSTED past limit bytes, INVALID_ARGUMENT if broken."""
    if not encoding:
        return body
    wbits = _DECODERS[encoding]
    try:
        return _inflate(body, wbits, limit)
    except zlib.error as error:
        if encoding != "deflate":
            raise invalid_argument(f"the request body is not valid {encoding}: {error}") from None
    try:
        return _inflate(body, -zlib.MAX_WBITS, limit)  # deflate as many clients send it: no zlib header
    except zlib.error as error:
        raise invalid_argument(f"the request body is not valid deflate: {error}") from None


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    output = bytearray()
    remaining = body
    while remaining:  # gzip allows several members, one after the other
        decompressor = zlib.decompressobj(wbits)
        output += decompressor.decompress(remaining, limit + 1 - len(output))
        if len(output) > limit:
            raise BodyTooLarge(limit)
        if not decompressor.eof:
            raise zlib.error("the compressed data ends before its end marker")
        remaining = decompressor.unused_data if wbits > zlib.MAX_WBITS else b""
    return bytes(output)
