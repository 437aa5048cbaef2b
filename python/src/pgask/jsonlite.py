"""json.loads and json.dumps for the code a new connection's first search runs, without
importing json.

json's Python layer imports re, and re imports enum: about 15 ms of a new backend's first
search here (issue 31), for regular expressions that only skip whitespace. The work is done by
`_json`, the C accelerator json itself calls; this module calls it directly with json's
default settings, so the values read and the text written are json's own (tests/unit/
test_jsonlite.py compares them on generated values). Where `_json` is missing or differs
(another Python implementation), these are json's functions.

Errors are json's: a malformed text raises json.JSONDecodeError (a ValueError; json.decoder
is imported then, on the error path only), a value JSON cannot hold raises TypeError.
"""

from __future__ import annotations

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE


class _Settings:
    """What _json.make_scanner reads from a json.JSONDecoder() with no arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _not_serializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _decode_error(message: str, text: str, at: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, at)


try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner

    _scan = _make_scanner(_Settings())
    # json.dumps(value) with every default: circular check, NaN allowed, ", " and ": ".
    _make_encoder(None, _not_serializable, _quote, None, ": ", ", ", False, False, True)
except (ImportError, TypeError):  # not CPython's _json: json's own functions
    from json import dumps, loads  # noqa: F401
else:

    def loads(text: str | bytes | bytearray):
        """json.loads(text)."""
        if isinstance(text, (bytes, bytearray)):
            # As json decodes UTF-8 (pgask writes nothing else; json also reads UTF-16/32).
            text = bytes(text).decode("utf-8-sig" if text[:3] == b"\xef\xbb\xbf" else "utf-8",
                                      "surrogatepass")
        elif not isinstance(text, str):
            raise TypeError("the JSON object must be str, bytes or bytearray, "
                            f"not {type(text).__name__}")
        elif text.startswith("\ufeff"):
            raise _decode_error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            try:
                value, end = _scan(text, start)
            except SystemError:
                # An error inside the text (a missing ',', a bad escape...): Python 3.11's
                # _json raises json.decoder.JSONDecodeError only when json.decoder is in
                # sys.modules, and otherwise returns NULL with no exception set, which Python
                # turns into SystemError (not a ValueError: the shared model process's
                # handler, the backend's fallback and the reranker's errors all let it
                # through). Import json.decoder, on this error path only, and read again.
                import json.decoder  # noqa: F401

                value, end = _scan(text, start)
        except StopIteration as stop:
            raise _decode_error("Expecting value", text, stop.value) from None
        if text[end:].strip(_WHITESPACE):
            raise _decode_error("Extra data", text,
                                end + len(text[end:]) - len(text[end:].lstrip(_WHITESPACE)))
        return value

    def dumps(value) -> str:
        """json.dumps(value)."""
        if isinstance(value, str):
            return _quote(value)
        # A new encoder per call, as json does: its markers catch a circular value.
        encode = _make_encoder({}, _not_serializable, _quote, None, ": ", ", ", False, False,
                               True)
        return "".join(encode(value, 0))
