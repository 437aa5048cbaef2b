"""Token counting without a tokenizer, and cutting text to a token budget.

Pure: the standard library only. ``TokenCounter`` is any ``str -> int`` counter; the real
tokenizers are in pgask.tokenization.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TokenCounter = Callable[[str], int]

# CJK ideographs and kana count as one token each, as word-piece tokenizers split
# them that way; a plain \w+ would count a whole unspaced CJK sentence as one token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def simple_token_count(text: str) -> int:
    """Approximate token count: words, single punctuation marks and CJK characters."""
    return len(_TOKEN.findall(text))


def truncate_to_tokens(text: str, limit: int, count: TokenCounter) -> str:
    """The longest run of ``text``'s leading words, single-spaced, within ``limit`` tokens."""
    words = text.split()
    joined = " ".join(words)
    if count(joined) <= limit:
        return joined
    fits, too_many = 0, len(words)  # count(first `fits` words) <= limit < count(`too_many`)
    while too_many - fits > 1:
        mid = (fits + too_many) // 2
        if count(" ".join(words[:mid])) <= limit:
            fits = mid
        else:
            too_many = mid
    return " ".join(words[:fits])
