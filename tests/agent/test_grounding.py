"""Plan targets must be grounded in the conversation (lookout.agent.grounding)."""

from __future__ import annotations

import json

import pytest

from lookout.agent.dialogue import Turn
from lookout.agent.grounding import clarification, is_grounded, ungrounded_phrases


def turn(user: str, *phrases: str) -> Turn:
    return Turn(user, json.dumps({"reply": "ok", "phrases": list(phrases), "steps": [], "declined": False}))


RED_CUP = [turn("find the red cup", "red cup")]


@pytest.mark.parametrize(("phrase", "command", "history"), [
    ("red cup", "find the red cup", []),
    ("red cup", "Find the big RED cup, please", []),
    ("green cup", "find the gren cup", []),  # one slip of the keyboard
    ("bottle", "look for bottles", []),  # plural
    ("person", "go to someone", []),
    ("teddy bear", "find the brown teddy bear", []),
    ("blue cup", "now the blue one", RED_CUP),  # the noun comes from the earlier plan
    ("red cup", "go back to it", RED_CUP),
    ("yellow bucket", "rotate until you spot yellow bucket then the red lamp", []),
])
def test_grounded_targets(phrase, command, history):
    assert is_grounded(phrase, command, history)


@pytest.mark.parametrize(("phrase", "command", "history"), [
    ("ball", "um", []),  # nothing was named
    ("red cone", "search for a red book, and after that the brown cone", []),  # words of two targets mixed
    ("red bucket", "rotate until you spot yellow bucket then the red lamp", []),
    ("white notebook", "can you see a white crate", []),
    ("blue cup", "now the blue one", []),  # a follow-up needs an earlier target
    ("green cup", "find the red cup", RED_CUP),  # every word must come from somewhere
    ("", "find the red cup", []),
])
def test_ungrounded_targets(phrase, command, history):
    assert not is_grounded(phrase, command, history)


def test_ungrounded_phrases_and_the_question_asked():
    missing = ungrounded_phrases(["red book", "red cone"], "search for a red book, and after that the brown cone")
    assert missing == ["red cone"]
    assert '"red cone"' in clarification(missing)


def test_a_broken_earlier_plan_is_only_ignored():
    history = [Turn("find the red cup", "not json"), Turn("hello", json.dumps(["a", "list"]))]
    assert is_grounded("red cup", "go there", history)  # still grounded by what the user said
    assert not is_grounded("blue cup", "now the blue one", history)


def test_the_question_fits_a_plan_reply():
    assert len(clarification(["x" * 500, "y" * 500, "z"])) <= 200


def test_grounded_candidates_are_grounded_and_hold_what_the_user_meant():
    from lookout.agent.grounding import grounded_candidates

    command = "search for a red book, and after that the brown cone"
    found = grounded_candidates(command)
    assert {"red book", "brown cone", "book", "cone"} <= set(found)
    assert "red cone" not in found and "ball" not in found  # the slips the tiny model made
    assert all(is_grounded(p, command) for p in found)
    assert "person" in grounded_candidates("follow someone wearing red")
    assert "red cup" in grounded_candidates("go to the red cups")  # plural said, singular named
    history = [Turn("find the red cup", '{"reply":"","phrases":["red cup"],"steps":[],"declined":false}')]
    follow = grounded_candidates("now the blue one", history)
    assert {"blue cup", "red cup"} <= set(follow) and all(is_grounded(p, "now the blue one", history) for p in follow)
    assert all(len(p) <= 12 for p in grounded_candidates(command, max_chars=12))
    assert grounded_candidates("um") == [] and "the cone" not in found and "go" not in grounded_candidates("go")
