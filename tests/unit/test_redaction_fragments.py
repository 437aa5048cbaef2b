"""Redaction catches what providers echo of a wrong key: its first or last characters."""

from pgask.providers import redact

KEY = "sk-proj-7Qx2mVb9LrT4nWc8ZpK3yHd6"


def test_fragments_of_the_key_are_redacted():
    message = (f"Incorrect API key provided: {KEY[:8]}...{KEY[-4:]}; also {KEY[10:18]} and"
               f" {KEY[-6:]}")
    redacted = redact(message, KEY)
    for fragment in (KEY[:8], KEY[-4:], KEY[10:18], KEY[-6:], KEY[-4:]):
        assert fragment not in redacted
    assert redacted.startswith("Incorrect API key provided: ***")


def test_words_without_a_fragment_of_the_key_stay():
    message = "HTTP 401 from http://127.0.0.1:8080/v1/embeddings: invalid_api_key"
    assert redact(message, KEY) == message
