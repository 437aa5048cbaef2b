"""pgask.jsonlite calls json's C accelerator without json's Python layer (which imports re and
enum: ~15 ms of a new connection's first search). What it reads and writes must be json's, on
generated values and texts, malformed ones included."""

import json
import math
import random
import subprocess
import sys

import pytest

from pgask import jsonlite

SEED = 20261207


def _text(rng: random.Random) -> str:
    alphabet = ["a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é",
                "€", "\u2028", "\ud800", "\U0001f600", "'", "{", "]"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _number(rng: random.Random):
    return rng.choice([
        rng.randint(-10, 10), rng.randint(-2**70, 2**70), rng.uniform(-1e6, 1e6),
        rng.choice([0.0, -0.0, 1e-320, 1.7976931348623157e308, 5e-324, 0.1, 1 / 3]),
        rng.choice([math.inf, -math.inf, math.nan]), True, False,
    ])


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind == 0:
        return _number(rng)
    if kind == 1:
        return _text(rng)
    if kind == 2:
        return None
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [_text(rng), rng.randint(-5, 5), 2.5, True, None]  # json turns these into strings
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                      == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_it_writes_what_json_writes_and_reads_it_back_as_json_does():
    rng = random.Random(SEED)
    for _ in range(3000):
        value = _value(rng)
        text = jsonlite.dumps(value)
        assert text == json.dumps(value)
        assert _same(jsonlite.loads(text), json.loads(text))
        spaced = json.dumps(value, indent=rng.choice([None, 1, "\t"]))
        assert _same(jsonlite.loads(f" \n{spaced}\r\t"), json.loads(spaced))
        for data in (spaced.encode("utf-8", "surrogatepass"),
                     b"\xef\xbb\xbf" + spaced.encode("utf-8", "surrogatepass")):
            assert _same(jsonlite.loads(data), json.loads(data))


def test_malformed_texts_fail_as_json_fails():
    rng = random.Random(SEED + 1)
    texts = ["", " ", "{", "[1,]", "1 2", "nul", '{"a" 1}', '"\x01"', "[1]x", "-", "01",
             '{"a": 1,}', "NaN1", "\ufeff1", "[" * 5]
    for _ in range(2000):  # generated: a valid text cut short or with one character changed
        good = json.dumps(_value(rng))
        at = rng.randrange(len(good) + 1)
        texts.append(good[:at] if rng.random() < 0.5
                     else good[:at] + rng.choice('{}[]":, x\\') + good[at + 1:])
    for text in texts:
        try:
            expected = json.loads(text)
        except json.JSONDecodeError as exc:
            with pytest.raises(json.JSONDecodeError) as got:
                jsonlite.loads(text)
            assert (got.value.msg, got.value.pos) == (exc.msg, exc.pos), repr(text)
        else:
            assert _same(jsonlite.loads(text), expected), repr(text)


def test_what_json_cannot_write_fails_as_json_fails():
    circular: list = []
    circular.append(circular)
    for value, error in ((object(), TypeError), ({"a": {1, 2}}, TypeError),
                         ({(1, 2): 3}, TypeError), (circular, ValueError)):
        with pytest.raises(error) as expected:
            json.dumps(value)
        with pytest.raises(error) as got:
            jsonlite.dumps(value)
        assert str(got.value) == str(expected.value)
    with pytest.raises(TypeError):
        jsonlite.loads(None)


def test_importing_it_imports_neither_json_nor_re():
    code = ("import sys\nfrom pgask import jsonlite\njsonlite.loads(jsonlite.dumps({'a': [1]}))\n"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "[]"
    assert jsonlite.loads is not json.loads  # the C path, not json's fallback


def test_an_error_inside_the_text_is_json_s_where_json_was_never_imported():
    # Python 3.11's _json finds JSONDecodeError only in sys.modules: in a backend that had
    # not imported json, '{"a": 1' came out as SystemError, which no `except ValueError`
    # catches (the shared model process's handler, the backend's fallback to its own model,
    # a reranker's malformed answer). The test process has json, so this runs in a fresh one.
    texts = ['{"a": 1', "[1", "{", '"\\x"', b'[1, "\x01"]', b'{"a" 1}']
    header = b'{"op": "embed", "texts": ["a"'
    code = (
        "import struct, sys\n"
        "from pgask import jsonlite\n"
        "from pgask.embedders import shared_process\n"
        "assert 'json' not in sys.modules and 'json.decoder' not in sys.modules\n"
        "out = []\n"
        f"for text in {texts!r}:\n"
        "    try:\n"
        "        jsonlite.loads(text)\n"
        "    except ValueError as exc:\n"
        "        out.append([type(exc).__name__, exc.msg, exc.pos])\n"
        f"message = iter([struct.pack('!II', {len(header)}, 0), {header!r}])\n"
        "try:\n"
        "    shared_process.read_message(None, lambda n: next(message))\n"
        "except ValueError as exc:\n"
        "    out.append([type(exc).__name__, exc.msg, exc.pos])\n"
        "print(jsonlite.dumps(out))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    assert run.returncode == 0, run.stderr
    expected = []
    for text in [*texts, header]:
        with pytest.raises(json.JSONDecodeError) as info:
            json.loads(text)
        expected.append(["JSONDecodeError", info.value.msg, info.value.pos])
    assert json.loads(run.stdout) == expected


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,  # RecursionError: rag.search's "nested at most" error
    "1" * 4301, "-" + "1" * 5000, '{"a": ' + "9" * 4301 + "}",  # beyond sys's digits limit
    "1" * 4300, "1e999999", "-1e999999", "[NaN, Infinity, -Infinity]", "-NaN",
    '"\\ud800"', '"\\udc00\\ud83d\\ude00"', b'"\xed\xa0\x80"', b"\xff", b"\xef\xbb\xbf[1]",
    b"\xef\xbb\xbf\xef\xbb\xbf1", bytearray(b"[1]"), memoryview(b"[1]"), 7, None,
    "\ufeff1", " \ufeff1", "1\x0b", "\x0c1", "1\u00a0", "\u20281", "1 \x00",
])
def test_edge_texts_read_as_json_reads_them(text):
    def outcome(loads):
        try:
            return "value", repr(loads(text))
        except Exception as exc:  # noqa: BLE001 - the exception is what is compared
            return type(exc), str(exc), getattr(exc, "pos", None)

    assert outcome(jsonlite.loads) == outcome(json.loads)


def test_edge_values_write_as_json_writes_them():
    import enum

    class Number(enum.IntEnum):
        ONE = 1

    class Ratio(float):
        def __repr__(self):
            return "ratio"

    class Text(str):
        pass

    for value in (Number.ONE, {Number.ONE: Ratio(0.5)}, Ratio(2.5), {Ratio(2.5): 1},
                  Text("é\ud800"), {Text("k"): "\udfff"}, {True: 1, None: 2, 1.5: 3},
                  10**4300, [math.nan, -0.0, 1e400], {"a": 10**4301}, b"x", {b"k": 1},
                  {"a": [{1, 2}]}, (1, [2, (3,)])):
        try:
            expected = json.dumps(value)
        except (TypeError, ValueError) as exc:
            with pytest.raises(type(exc)) as got:
                jsonlite.dumps(value)
            assert str(got.value) == str(exc)
        else:
            assert jsonlite.dumps(value) == expected


def test_a_header_nested_past_pythons_limit_is_a_protocol_error():
    # RecursionError is not a ValueError: the shared model process's handler and a backend's
    # fallback to its own model catch ProtocolError, OSError and ValueError only.
    import struct

    from pgask.embedders import shared_process

    header = b"[" * 100_000 + b"]" * 100_000
    message = iter([struct.pack("!II", len(header), 0), header])
    with pytest.raises(shared_process.ProtocolError, match="nested too deeply"):
        shared_process.read_message(None, lambda n: next(message))
