"""Validation of the detector's vocabulary: the list of phrases it looks for.

A vocabulary arrives from users and from an LLM, so it is treated as untrusted: phrases are stripped and
deduplicated (first occurrence wins, order kept), and empty lists, blank phrases, absurd lengths and counts are
refused with a `VocabularyError` that says what to change.
"""

from __future__ import annotations

from collections.abc import Iterable

from lookout.perception.errors import VocabularyError

DEFAULT_MAX_PHRASES = 256
DEFAULT_MAX_PHRASE_CHARS = 100


def normalize_vocabulary(
    phrases: Iterable[str],
    *,
    max_phrases: int = DEFAULT_MAX_PHRASES,
    max_phrase_chars: int = DEFAULT_MAX_PHRASE_CHARS,
) -> list[str]:
    """Stripped, deduplicated phrases in their first-seen order, or a `VocabularyError`."""
    if isinstance(phrases, str):
        raise VocabularyError(f"vocabulary must be a list of phrases, not the single string {phrases!r}")
    out: dict[str, None] = {}
    for i, phrase in enumerate(phrases):
        if not isinstance(phrase, str):
            raise VocabularyError(f"phrase {i} is a {type(phrase).__name__}, not a string")
        text = phrase.strip()
        if not text:
            raise VocabularyError(f"phrase {i} is blank: every phrase needs at least one visible character")
        if not text.isprintable():
            raise VocabularyError(f"phrase {i} ({text[:40]!r}) contains control characters")
        if len(text) > max_phrase_chars:
            raise VocabularyError(
                f"phrase {i} has {len(text)} characters (at most {max_phrase_chars}): {text[:40]!r}..."
            )
        out.setdefault(text, None)
    if not out:
        raise VocabularyError("empty vocabulary: give at least one phrase to detect")
    if len(out) > max_phrases:
        raise VocabularyError(f"{len(out)} phrases is more than the limit of {max_phrases}")
    return list(out)
