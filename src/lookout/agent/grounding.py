"""Plan targets must come from the conversation: an object the user never named is a slip of the model.

The planner writes each target as the user named it ("the red book" -> "red book"; follow-ups such as
"now the blue one" borrow the noun of an earlier turn). A small model sometimes composes a target from
the wrong words ("red cone" for "a red book, then the brown cone") or invents one for a filler ("um" ->
"ball"). Such a plan is well-formed and passes the schema, yet driving to it would be driving to
something nobody asked for, so the planner asks again instead. A target phrase is grounded when
  1. its words appear in order within one clause of something the user said (clauses end at
     punctuation and at "then", "and", "after", "next", ...; up to three other words between them), or
  2. it is a target of an earlier plan ("go back to it"), or
  3. it is a follow-up: it uses a word the current command does not contain, and each of its words is in
     the current command or in an earlier plan's targets ("now the blue one" after "red cup").
Words match allowing plural forms and one slip of the keyboard in words of four letters or more;
"person" matches the words people use for one ("someone").

`grounded_candidates` lists phrases that pass these rules, built from the conversation's own words: when
a plan fails the check, the planner decodes once more with its phrases restricted to that list (the
model still chooses; it can no longer invent), and asks only if that fails too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from lookout.agent.dialogue import Turn

# Words people use for a person; plans name the detector class "person" (see lookout.train.vocab).
PERSON_WORDS = frozenset({"person", "people", "someone", "somebody", "human", "humans", "anyone", "anybody",
                          "man", "woman", "guy", "persons"})
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


def _stem(word: str) -> str:
    for suffix in ("es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _one_slip(a: str, b: str) -> bool:
    """Optimal-string-alignment distance <= 1 (a swap of neighbours counts as one)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if la < lb else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def _said(word: str, vocabulary: set[str]) -> bool:
    if word in vocabulary or _stem(word) in {_stem(v) for v in vocabulary}:
        return True
    if word == "person" and vocabulary & PERSON_WORDS:
        return True
    if len(word) >= 4:
        return any(len(v) >= 4 and _one_slip(word, v) for v in vocabulary)
    return False


_CONNECTORS = frozenset({"then", "and", "after", "afterwards", "next", "before", "finally", "also", "plus",
                         "followed", "first", "later"})
_CLAUSE_BREAK = re.compile(r"[,.;:!?]+")
MAX_GAP = 3


def _clauses(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for part in _CLAUSE_BREAK.split(text.casefold()):
        clause: list[str] = []
        for w in _WORD.findall(part):
            if w in _CONNECTORS:
                if clause:
                    out.append(clause)
                clause = []
            else:
                clause.append(w)
        if clause:
            out.append(clause)
    return out


def _in_clause(words: list[str], clause: list[str]) -> bool:
    """words in order in clause, at most MAX_GAP other words between neighbours."""
    pos = -1
    for i, w in enumerate(words):
        lo = pos + 1
        hi = len(clause) if i == 0 else min(len(clause), pos + 2 + MAX_GAP)
        hit = next((j for j in range(lo, hi) if _said(w, {clause[j]})), None)
        if hit is None:
            return False
        pos = hit
    return True


def _plan_phrases(turn: Turn) -> list[str]:
    try:
        phrases = json.loads(turn.assistant).get("phrases", [])
    except (ValueError, AttributeError):
        return []
    return [p for p in phrases if isinstance(p, str)] if isinstance(phrases, list) else []


def is_grounded(phrase: str, command: str, history: Sequence[Turn] = ()) -> bool:
    """Whether `phrase` is grounded in the conversation (rules in the module docstring)."""
    words = _WORD.findall(phrase.casefold())
    if not words:
        return False
    said = [command, *(t.user for t in history)]
    if any(_in_clause(words, clause) for text in said for clause in _clauses(text)):
        return True
    earlier = [p for t in history for p in _plan_phrases(t)]
    if any(_WORD.findall(p.casefold()) == words for p in earlier):
        return True
    now = _words(command)
    borrowed = set().union(*(_words(p) for p in earlier)) if earlier else set()
    return not all(_said(w, now) for w in words) and all(_said(w, now | borrowed) for w in words)


def ungrounded_phrases(phrases: Iterable[str], command: str, history: Sequence[Turn] = ()) -> list[str]:
    """The target phrases that are not grounded (empty when all are)."""
    return [p for p in phrases if not is_grounded(p, command, history)]


def clarification(phrases: Sequence[str]) -> str:
    """The reply of the declined plan (under the plan's 200-character reply limit)."""
    quoted = ", ".join(f'"{p[:30]}"' for p in phrases[:2]) + (", ..." if len(phrases) > 2 else "")
    return f"Sorry, I'm not sure which object you mean ({quoted} is not what I heard). Please name it again."


MAX_CANDIDATE_WORDS = 4
# Words that neither start nor end an object's name: articles, pronouns, prepositions, fillers and the verbs
# of commands. Without them a re-decode could only name "go" or "um" when the object was never said.
_NOT_AN_OBJECT_WORDS = """
    a an the this that these those it its them one ones some any all each every my your our his her their
    me you him us we i he she they to of in on at by for with from into onto over under near next behind
    beside between around toward towards up down out off back away here there where what which who
    and or but then now please could would can will should shall may might must do does did just also
    go goes going find finds search look looking locate approach drive move turn come get bring fetch
    head navigate walk spot seek see check stop wait report tell show follow ok okay um uh hmm er erm so
    is are was be been being have has had not no yes hey hi hello thanks thank again
    """
NOT_AN_OBJECT = frozenset(_NOT_AN_OBJECT_WORDS.split())


def _subsequences(clause: list[str]) -> Iterable[tuple[str, ...]]:
    """In-order word tuples of a clause (up to MAX_CANDIDATE_WORDS words, MAX_GAP skipped between neighbours)."""
    def grow(seq: tuple[int, ...]) -> Iterable[tuple[int, ...]]:
        yield seq
        if len(seq) < MAX_CANDIDATE_WORDS:
            for j in range(seq[-1] + 1, min(len(clause), seq[-1] + 2 + MAX_GAP)):
                yield from grow((*seq, j))

    for i in range(len(clause)):
        for seq in grow((i,)):
            yield tuple(clause[j] for j in seq)


def grounded_candidates(command: str, history: Sequence[Turn] = (), max_chars: int = 60) -> list[str]:
    """Phrases a plan may name in reply to `command` (each passes `is_grounded`), shortest first.

    Word tuples of every clause the user said that start and end with a word that can name an object
    (not "the", "go", "um": NOT_AN_OBJECT), also with the last word singular ("cups" -> "cup"), "person"
    when someone was mentioned, earlier targets, and follow-ups: an earlier target with one word swapped for
    (or preceded by) a word of the current command ("now the blue one" after "red cup" -> "blue cup").
    """
    found: dict[str, None] = {}

    def add(words: Sequence[str]) -> None:
        phrase = " ".join(words)
        if phrase and len(phrase) <= max_chars and words[0] not in NOT_AN_OBJECT and words[-1] not in NOT_AN_OBJECT:
            found.setdefault(phrase, None)

    said = [command, *(t.user for t in history)]
    for text in said:
        for clause in _clauses(text):
            for words in _subsequences(clause):
                add(words)
                if _stem(words[-1]) != words[-1]:
                    add((*words[:-1], _stem(words[-1])))
            if any(w in PERSON_WORDS for w in clause):
                add(("person",))
    now = list(dict.fromkeys(_WORD.findall(command.casefold())))
    for phrase in (p for t in history for p in _plan_phrases(t)):
        words = _WORD.findall(phrase.casefold())
        add(words)
        for w in now:
            add((w, *words))
            for i in range(len(words)):
                add((*words[:i], w, *words[i + 1:]))
    return sorted((p for p in found if is_grounded(p, command, history)), key=lambda p: (len(p), p))
