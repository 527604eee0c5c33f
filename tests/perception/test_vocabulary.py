"""Vocabulary validation: untrusted phrases in, a clean list or a clear VocabularyError out."""

from __future__ import annotations

import pytest

from lookout.perception.errors import VocabularyError
from lookout.perception.vocabulary import normalize_vocabulary


def test_phrases_are_stripped_and_deduplicated_in_first_seen_order():
    assert normalize_vocabulary(["  red cup ", "person", "red cup", "Person"]) == [
        "red cup",
        "person",
        "Person",
    ]


@pytest.mark.parametrize(
    ("phrases", "match"),
    [
        ([], "empty vocabulary"),
        (["cup", "   "], "phrase 1 is blank"),
        (["cup\x00"], "control characters"),
        (["x" * 101], "101 characters"),
        ([f"thing {i}" for i in range(300)], "300 phrases"),
        (["cup", 3], "phrase 1 is a int"),
        ("red cup", "not the single string"),
    ],
)
def test_bad_vocabularies_are_refused_with_a_reason(phrases, match):
    with pytest.raises(VocabularyError, match=match):
        normalize_vocabulary(phrases)


def test_limits_are_configurable():
    assert normalize_vocabulary(["a", "b"], max_phrases=2, max_phrase_chars=1) == ["a", "b"]
    with pytest.raises(VocabularyError):
        normalize_vocabulary(["a", "b", "c"], max_phrases=2)
