"""Redaction sees through disguised echoes of a key (spaced out, reversed, case changed,
base64, JSON, URL and HTML escapes, and their combinations), in errors and in an LLM's
reply, and leaves ordinary text alone.

The property test draws random keys and random surrounding text from a fixed seed, applies
every disguise, and checks the output with its own detection, written apart from the
module's: the output decoded every way the disguises encode, folded (lower case, letters and
digits only), must hold no SPREAD characters of the key either way round, and the output as
written no FRAGMENT characters of it nor the stable middle of any of its base64 encodings.
"""

from __future__ import annotations

import base64
import html
import random
import re
import string
import unicodedata
import urllib.parse
from types import SimpleNamespace

import pytest

from pgask.llm.chat import ChatClient, LLMSpec
from pgask.providers import redact

SEED = 20250611
KEYS = 60
ALPHABET = string.ascii_letters + string.digits + "_-"
# Public prefixes of real key kinds, and none: the secret part is what follows.
PREFIXES = ("sk-", "sk-proj-", "sk-ant-api03-", "key-", "pk_live_", "gsk_", "xai-", "hf_",
            "github_pat_", "AIza", "")
FRAGMENT = 4
SPREAD = 8
SEPARATORS = (" ", "-", ".", "_", ",", "/", "|", ":", "\t", "\u00b7")

ENGLISH = (
    "The project team met on Monday to review the budget, and everyone agreed that the "
    "launch should wait until the live tests have passed. Keys to the office are kept in "
    "the blue safe near the reception desk.",
    "Autovacuum launches a worker every sixty seconds by default; the interval can be "
    "changed, and workers skip tables that are locked by another session.",
    "She said the answer was simple: read the documentation, ask a colleague, and only then "
    "open a ticket with the provider. Most questions are answered within a day.",
    "Retrieval finds the passages most similar to the question, reranking reorders them, "
    "and the language model writes an answer that cites the passages it used.",
    "Numbers such as 42, 3.14 and 2025-06-11 appear in reports; so do words like "
    "information, responsibilities, internationalization and characteristics.",
)
# Technical prose: key-shaped phrases are only masked in errors, never in a reply's text.
TECHNICAL = ("Use a key-value store for sessions and send Bearer tokens over TLS; rotate the "
             "secret key every month and keep the project's API keys out of the repository.")
WORDS = " ".join(ENGLISH).replace(",", "").replace(".", "").replace(";", "").split()


def make_key(rng: random.Random) -> tuple[str, str]:
    """A key of 20 to 60 characters and its secret part (what follows the prefix)."""
    prefix = rng.choice(PREFIXES)
    length = rng.randint(20, 60)
    secret = "".join(rng.choice(ALPHABET) for _ in range(length - len(prefix)))
    return prefix + secret, secret


# --- the disguises ---------------------------------------------------------------------------

def spaced(text: str, rng: random.Random) -> str:
    return "".join(c + rng.choice(SEPARATORS) for c in text[:-1]) + text[-1]


def random_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def b64(data: bytes, urlsafe: bool, padded: bool) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    return encoded if padded else encoded.rstrip("=")


def b64_embedded(text: str, rng: random.Random, align: int, urlsafe: bool) -> str:
    """The text's bytes inside longer data, at one of the three byte alignments."""
    before = rng.randbytes(3 * rng.randint(0, 3) + align)
    return b64(before + text.encode() + rng.randbytes(rng.randint(0, 8)), urlsafe, padded=True)


def escaped(text: str, rng: random.Random, form: str, share: float) -> str:
    """Each character escaped with probability `share`."""
    return "".join(form.format(ord(c)) if rng.random() < share else c for c in text)


TRANSFORMS = {
    "plain": lambda k, r: k,
    "upper": lambda k, r: k.upper(),
    "lower": lambda k, r: k.lower(),
    "swapcase": lambda k, r: k.swapcase(),
    "random case": random_case,
    "spaced": spaced,
    "reversed": lambda k, r: k[::-1],
    "reversed+spaced": lambda k, r: spaced(k[::-1], r),
    "upper+spaced": lambda k, r: spaced(k.upper(), r),
    "base64": lambda k, r: b64(k.encode(), urlsafe=False, padded=True),
    "base64 unpadded": lambda k, r: b64(k.encode(), urlsafe=False, padded=False),
    "base64 urlsafe": lambda k, r: b64(k.encode(), urlsafe=True, padded=True),
    "base64 urlsafe unpadded": lambda k, r: b64(k.encode(), urlsafe=True, padded=False),
    **{f"base64 embedded align {a}{' urlsafe' * u}": (
        lambda k, r, a=a, u=u: b64_embedded(k, r, a, bool(u))) for a in range(3)
       for u in range(2)},
    "upper+base64": lambda k, r: b64(k.upper().encode(), urlsafe=False, padded=True),
    "reversed+base64": lambda k, r: b64(k[::-1].encode(), urlsafe=True, padded=False),
    "spaced+base64": lambda k, r: b64(spaced(k, r).encode(), urlsafe=False, padded=True),
    "json escapes": lambda k, r: escaped(k, r, "\\u{:04x}", 1.0),
    "json escapes partial": lambda k, r: escaped(k, r, "\\u{:04X}", 0.5),
    "percent": lambda k, r: escaped(k, r, "%{:02X}", 1.0),
    "percent partial": lambda k, r: escaped(k, r, "%{:02x}", 0.4),
    "percent twice": lambda k, r: escaped(k, r, "%{:02X}", 1.0).replace("%", "%25"),
    "html entities": lambda k, r: escaped(k, r, "&#{};", 0.7),
    "upper+percent": lambda k, r: escaped(k.upper(), r, "%{:02X}", 0.6),
    "reversed+json escapes": lambda k, r: escaped(k[::-1], r, "\\u{:04x}", 0.6),
    "base64+percent": lambda k, r: urllib.parse.quote(
        b64(k.encode(), urlsafe=False, padded=True), safe=""),
    "hex": lambda k, r: k.encode().hex(),
    "fullwidth": lambda k, r: "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in k),
}


def surround(echo: str, rng: random.Random) -> str:
    """The echo inside random text, loose or glued to punctuation."""
    before = " ".join(rng.choices(WORDS, k=rng.randint(0, 12)))
    after = " ".join(rng.choices(WORDS, k=rng.randint(0, 12)))
    shape = rng.choice(("{b} {e} {a}.", "{b}: \"{e}\", {a}", "{b} ({e}) {a}", "{b} key={e}&x=1",
                        "{{\"api_key\": \"{e}\", \"note\": \"{a}\"}}", "{e}"))
    return shape.format(b=before, e=echo, a=after)


# --- the test's own detection ----------------------------------------------------------------

def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower()
                   if c.isascii() and c.isalnum())


def decodings(text: str) -> list[str]:
    """The text as written and decoded each way a disguise encodes: escapes (twice over),
    base64 runs from each of their first four characters, hex runs."""
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    views = [text, unescaped, html.unescape(text), urllib.parse.unquote(text),
             urllib.parse.unquote(urllib.parse.unquote(text))]
    decoded = []
    for view in views:
        for run in re.findall(r"[A-Za-z0-9+/_-]{11,}", view):
            run = run.replace("-", "+").replace("_", "/")
            for offset in range(4):
                chars = run[offset:][:len(run[offset:]) // 4 * 4]
                decoded.append(base64.b64decode(chars).decode("utf-8", "replace"))
        for run in re.findall(r"[0-9a-fA-F]{16,}", view):
            for offset in range(2):
                chars = run[offset:][:len(run[offset:]) // 2 * 2]
                decoded.append(bytes.fromhex(chars).decode("utf-8", "replace"))
    return views + decoded


def windows(text: str, size: int) -> set[str]:
    return {text[i:i + size] for i in range(len(text) - size + 1)}


def secret_windows(secret: str, size: int, folded: bool) -> set[str]:
    """The secret part's runs of `size` characters, both ways round when folded."""
    if not folded:
        return windows(secret, size)
    found = windows(fold(secret), size)
    return found | {w[::-1] for w in found}


def base64_middles(key: str, secret: str) -> set[str]:
    """12-character runs of the key's base64 encodings (standard and URL-safe, as written,
    upper-cased, reversed) at each byte alignment that encode only its secret part. The
    groups at either end are left out: they depend on the bytes around the key."""
    public = len(key) - len(secret)
    found = set()
    for variant, first_secret, last_secret in ((key, public, len(key) - 1),
                                               (key.upper(), public, len(key) - 1),
                                               (key[::-1], 0, len(secret) - 1)):
        for align in range(3):
            encoded = base64.b64encode(b"\0" * align + variant.encode()).decode()
            for start in range(4 if align else 0, len(encoded) - 4 - 12 + 1):
                first = start * 6 // 8 - align
                last = ((start + 12) * 6 - 1) // 8 - align
                if first >= first_secret and last <= last_secret:
                    run = encoded[start:start + 12]
                    found |= {run, run.replace("+", "-").replace("/", "_")}
    return found


def leaks(output: str, key: str, secret: str) -> list[str]:
    """What of the key the output still shows, by the test's own detection."""
    found = [w for w in secret_windows(secret, FRAGMENT, folded=False) if w in output]
    found += [w for w in base64_middles(key, secret) if w in output]
    spread = secret_windows(secret, SPREAD, folded=True)
    for view in decodings(output):
        found += [w for w in windows(fold(view), SPREAD) if w in spread]
    return found


# --- the tests -------------------------------------------------------------------------------

def test_the_detection_finds_every_disguise_unredacted():
    """The test's detection is worth something: it sees each disguise in the raw text."""
    rng = random.Random(SEED)
    for _ in range(20):
        key, secret = make_key(rng)
        for name, transform in TRANSFORMS.items():
            message = surround(transform(key, rng), rng)
            assert leaks(message, key, secret), (name, key, message)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_no_disguised_echo_of_the_key_survives(name):
    rng = random.Random(f"{SEED}-{name}")
    transform = TRANSFORMS[name]
    for _ in range(KEYS):
        key, secret = make_key(rng)
        whole = surround(transform(key, rng), rng)
        start = rng.randrange(0, len(key) - 12)
        part = key[start:start + rng.randint(12, len(key) - start)]  # a partial echo
        sliced = surround(transform(part, rng), rng)
        for message in (whole, sliced):
            for shapes in (True, False):
                output = redact(message, key, shapes=shapes)
                assert not leaks(output, key, secret), (name, key, message, output)


def test_ordinary_text_comes_through_unchanged():
    rng = random.Random(SEED)
    for _ in range(300):
        key, _secret = make_key(rng)
        for text in ENGLISH:
            assert redact(text, key) == text, key
        assert redact(TECHNICAL, key, shapes=False) == TECHNICAL, key


def test_an_llm_reply_echoing_the_key_is_redacted():
    key = "sk-proj-7Qx2mVb9LrT4nWc8ZpK3yHd6"
    echo = " ".join(key[::-1]) + " and " + base64.b64encode(key.upper().encode()).decode()
    client = ChatClient(LLMSpec("echo", "openai", "m", "http://127.0.0.1:9/v1", api_key=key))
    message = SimpleNamespace(content=f"Your project's key is {echo}, so: {TECHNICAL}")
    response = SimpleNamespace(choices=[SimpleNamespace(message=message,
                                                        finish_reason="stop")],
                               model="m", usage=None)
    client._request = lambda messages, max_tokens=None: response
    reply = client.complete([{"role": "user", "content": "What is your key?"}])
    assert reply.text == f"Your project's key is *** and ***, so: {TECHNICAL}"
