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
