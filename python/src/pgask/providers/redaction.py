"""API keys out of provider text. Providers echo parts of a wrong key back in their errors, and
a reply (an LLM's answer) may repeat a key it was shown, disguised: spaced out, reversed,
upper-cased, base64-encoded, or written with JSON, URL or HTML escapes. `redact` finds the key
through all of these and takes out every word (or spread-out run) that carries it.

Three rules, each tuned so that ordinary prose without key material comes through unchanged:

- a word sharing FRAGMENT consecutive characters with the key, exactly as written, goes (what
  providers echo: "sk-...abcd"), as it always did;
- a word sharing FOLDED_FRAGMENT characters with the key once both are folded (lower case,
  letters and digits only) or with the folded key reversed goes: more characters than the
  exact rule, as folding makes chance matches with English words likelier;
- SPREAD folded characters of the key (or of it reversed) in a row anywhere in the folded
  text, separators and spaces dropped, go with everything between them: "s k - p r o j" is
  one echo. Decoded base64 and hex runs are searched the same way.

Escapes are decoded first (keeping where each character came from), so every rule also sees
through them. A known public prefix ("sk-proj-") is not secret: pieces mostly made of it do
not count (see _Key).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

_KEY_PATTERN = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_*\-.]{4,}", re.IGNORECASE)

# Runs of characters that can be part of a key, or of a provider's abbreviation of one
# ("sk-...abcd", "sk-proj-****abcd").
_TOKEN = re.compile(r"[A-Za-z0-9_\-.*+/=~]{4,}")
FRAGMENT = 4
FOLDED_FRAGMENT = 5
SPREAD = 8

# A redaction grows to the whole word around it, escapes included, as the fragment rule
# always did: what is left of a word that carried key material is no use to anyone.
_WORD_CHAR = re.compile(r"[A-Za-z0-9_\-.*+/=~%\\&#;]")

# One level of character escapes: JSON and Python (\u0073, \x73), URL (%73), HTML (&#115;,
# &#x73;). Nested escapes ("%255C") are peeled one level per pass.
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|%([0-9a-fA-F]{2})"
                     r"|&#([0-9]{1,7});|&#[xX]([0-9a-fA-F]{1,6});")
_ESCAPE_PASSES = 3

# Base64 (standard or URL-safe alphabet) and hex long enough to hold SPREAD bytes.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{11,}={0,2}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_URLSAFE = str.maketrans("-_", "+/")
# Decoded runs are searched again (base64 of a JSON-escaped key, ...), this many levels deep.
_DECODE_DEPTH = 2


class _View:
    """A text with, for each of its characters, the span of the original message it came
    from: a decoded escape is one character standing for several."""

    def __init__(self, text: str, starts: list[int], ends: list[int]) -> None:
        self.text, self.starts, self.ends = text, starts, ends

    @classmethod
    def of(cls, message: str) -> _View:
        return cls(message, list(range(len(message))), list(range(1, len(message) + 1)))

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The original span of this view's characters first..last (inclusive)."""
        return self.starts[first], self.ends[last]


class _Key:
    """What the rules compare with: the key's exact pieces, and the folded key's pieces both
    ways round. A key's public prefix ("sk-proj-", "pk_live_") is the same for every key of
    its kind, so it reveals nothing, and its pieces are English ("proj", "live"): a piece
    counts only when at least half of it is the secret part after the prefix, or an answer
    about a project (or a "proje..." key) would lose the word."""

    def __init__(self, secret: str) -> None:
        public = len(_public_prefix(secret))
        folded, folded_public = _fold(secret), len(_fold(secret[:public]))
        self.exact = _pieces(secret, FRAGMENT, public)
        self.folded = _both_ways(_pieces(folded, FOLDED_FRAGMENT, folded_public))
        self.spread = _both_ways(_pieces(folded, SPREAD, folded_public))
        # The prefix's own pieces still join a run that holds secret ones: a spaced-out echo
        # goes whole, not from its first secret character on.
        self.spread_joining = _both_ways(_pieces(folded, SPREAD))


# Prefixes that providers publish for their kinds of keys. A list rather than a pattern: a
# pattern ("short lower-case words ending in - or _") would take the start of a secret
# part such as "ov-..." for a prefix, and its pieces would go unguarded.
_PUBLIC_PREFIXES = (
    "sk-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk-ant-", "sk-ant-api03-",
    "sk-ant-admin01-", "sk-or-v1-", "sk_live_", "sk_test_", "pk_live_", "pk_test_",
    "rk_live_", "rk_test_", "whsec_", "github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "glpat-", "xoxb-", "xoxp-", "xapp-", "hf_", "gsk_", "xai-", "nvapi-", "pplx-", "r8_",
    "key-", "AIza", "AKIA",
)


def _public_prefix(secret: str) -> str:
    """The longest known public prefix the key starts with, or ""."""
    return max((p for p in _PUBLIC_PREFIXES if secret.startswith(p)), key=len, default="")


def redact(message: str, secret: str | None, *, shapes: bool = True) -> str:
    """The message without the API key, nor any fragment of it, nor any disguise of it (see
    the module's docstring), nor, with `shapes`, anything shaped like a key ("sk-...",
    "Bearer ..."). Errors want `shapes`; a reply's text does not: an answer about key-value
    stores or Bearer tokens must come through whole."""
    if secret:
        message = message.replace(secret, "***")
        if len(secret) >= 2 * FRAGMENT:
            message = _cut(message, _key_spans(message, _Key(secret)))
    if shapes:
        message = _KEY_PATTERN.sub(lambda m: m.group(1) + "***", message)
    return message


def _key_spans(message: str, key: _Key) -> list[tuple[int, int]]:
    """The spans of the message that carry key material, by all three rules, in the message
    as written and with its escapes decoded."""
    spans = []
    for view in _views(message):
        spans += _word_spans(view, key)
        if key.spread:
            spans += _spread_spans(view, key)
            spans += _encoded_spans(view, key, _DECODE_DEPTH)
    return spans


def _views(message: str) -> list[_View]:
    """The message as written, then with escapes decoded, one view per pass that changed it."""
    views = [_View.of(message)]
    for _ in range(_ESCAPE_PASSES):
        decoded = _unescape(views[-1])
        if decoded.text == views[-1].text:
            break
        views.append(decoded)
    return views


def _unescape(view: _View) -> _View:
    """One level of escapes decoded; each decoded character spans its whole escape."""
    text, starts, ends = [], [], []
    position = 0
    for match in _ESCAPE.finditer(view.text):
        text.append(view.text[position:match.start()])
        starts += view.starts[position:match.start()]
        ends += view.ends[position:match.start()]
        base = 10 if match.group(4) is not None else 16
        code = int(next(g for g in match.groups() if g is not None), base)
        text.append(chr(code) if code < 0x110000 else "\ufffd")
        starts.append(view.starts[match.start()])
        ends.append(view.ends[match.end() - 1])
        position = match.end()
    text.append(view.text[position:])
    starts += view.starts[position:]
    ends += view.ends[position:]
    return _View("".join(text), starts, ends)


def _word_spans(view: _View, key: _Key) -> list[tuple[int, int]]:
    """Words sharing FRAGMENT characters with the key as written, or FOLDED_FRAGMENT
    characters folded (either way round)."""
    spans = []
    for match in _TOKEN.finditer(view.text):
        word = match.group(0)
        if (_pieces(word, FRAGMENT) & key.exact
                or _pieces(_fold(word), FOLDED_FRAGMENT) & key.folded):
            spans.append(view.span(match.start(), match.end() - 1))
    return spans


def _spread_spans(view: _View, key: _Key) -> list[tuple[int, int]]:
    """Runs of SPREAD or more folded characters of the key, whatever lies between them,
    each holding at least one piece of its secret part."""
    folded, origin = _fold_with_origin(view.text)
    covered = [False] * len(folded)
    secret = [False] * len(folded)  # where a piece of the secret part starts
    for i in range(len(folded) - SPREAD + 1):
        piece = folded[i:i + SPREAD]
        if piece in key.spread_joining:
            covered[i:i + SPREAD] = [True] * SPREAD
            secret[i] = piece in key.spread
    spans = []
    i = 0
    while i < len(folded):
        if not covered[i]:
            i += 1
            continue
        first = i
        while i < len(folded) and covered[i]:
            i += 1
        if any(secret[first:i]):
            spans.append(view.span(origin[first], origin[i - 1]))
    return spans


def _encoded_spans(view: _View, key: _Key, depth: int) -> list[tuple[int, int]]:
    """Base64 and hex runs whose decoding carries the key."""
    spans = []
    for pattern, decode in ((_BASE64_RUN, _base64_decodings), (_HEX_RUN, _hex_decodings)):
        for match in pattern.finditer(view.text):
            if any(_carries(text, key, depth) for text in decode(match.group(0))):
                spans.append(view.span(match.start(), match.end() - 1))
    return spans


def _carries(text: str, key: _Key, depth: int) -> bool:
    """Whether a decoded text holds SPREAD folded characters of the key, searched as a
    message is (its escapes and its own encoded runs too, `depth` levels down)."""
    for view in _views(text):
        if _spread_spans(view, key):
            return True
        if depth > 1 and _encoded_spans(view, key, depth - 1):
            return True
    return False


def _base64_decodings(run: str) -> list[str]:
    """The run decoded from each of its first four characters: one of them is where a
    base64 string embedded in the run is aligned. Either alphabet; padding optional."""
    run = run.rstrip("=").translate(_URLSAFE)
    decodings = []
    for offset in range(4):
        chars = run[offset:]
        if len(chars) % 4 == 1:  # a lone last character holds no whole byte
            chars = chars[:-1]
        try:
            data = base64.b64decode(chars + "=" * (-len(chars) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decodings.append(_text(data))
    return decodings


def _hex_decodings(run: str) -> list[str]:
    """The run decoded as hex from its first and second character."""
    decodings = []
    for offset in range(2):
        chars = run[offset:]
        data = bytes.fromhex(chars[:len(chars) - len(chars) % 2])
        decodings.append(_text(data))
    return decodings


def _text(data: bytes) -> str:
    """Decoded bytes as text: UTF-8, each stray byte one replacement character. (Latin-1
    would turn the two bytes of a "·" separator into "Â·", whose "Â" folds into an "a" among
    the key's letters.)"""
    return data.decode("utf-8", "replace")


def _cut(message: str, spans: list[tuple[int, int]]) -> str:
    """The message with each span, grown to its whole word, replaced by "***"; spans that
    overlap or touch become one."""
    merged: list[list[int]] = []
    for start, end in sorted(_grow(message, start, end) for start, end in spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces = []
    position = 0
    for start, end in merged:
        pieces += [message[position:start], "***"]
        position = end
    pieces.append(message[position:])
    return "".join(pieces)


def _grow(message: str, start: int, end: int) -> tuple[int, int]:
    """The span widened to the word it is part of, as far as _WORD_CHAR goes."""
    while start > 0 and _WORD_CHAR.match(message[start - 1]):
        start -= 1
    while end < len(message) and _WORD_CHAR.match(message[end]):
        end += 1
    return start, end


def _fold_with_origin(text: str) -> tuple[str, list[int]]:
    """The text in lower case with only its ASCII letters and digits, compatibility forms
    ("ｓｋ", accents) reduced to them; and for each folded character, the index of the
    character it came from."""
    folded, origin = [], []
    for i, char in enumerate(text):
        forms = char.lower() if char.isascii() else unicodedata.normalize("NFKD", char).lower()
        for form in forms:
            if form.isascii() and form.isalnum():
                folded.append(form)
                origin.append(i)
    return "".join(folded), origin


def _fold(text: str) -> str:
    """The text in lower case with only its ASCII letters and digits (_fold_with_origin)."""
    return _fold_with_origin(text)[0]


def _pieces(text: str, size: int, public: int = 0) -> set[str]:
    """Every run of `size` consecutive characters of the text with at least half of it past
    the text's first `public` characters."""
    return {text[i:i + size] for i in range(max(0, public - size // 2), len(text) - size + 1)}


def _both_ways(pieces: set[str]) -> set[str]:
    """The pieces, and the pieces of the text reversed."""
    return pieces | {piece[::-1] for piece in pieces}
