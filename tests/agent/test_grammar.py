"""The decoding grammar: generated from the capabilities, accepts every canonical plan, refuses the rest."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

from lookout.agent.capabilities import Capabilities
from lookout.agent.grammar import PlanGrammar, grammar_schema, plan_rules, unenforced_string_bounds
from lookout.agent.plan import make_plan, parse_plan

NO_MOVE = Capabilities(actions=["search", "approach", "turn", "report", "stop"])


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models["random"])


def _grammar(tokenizer, caps: Capabilities) -> PlanGrammar:
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    return PlanGrammar(tokenizer, caps, vocab_size=len(tokenizer), stop_token_ids=[eot])


@pytest.fixture(scope="module")
def grammar(tokenizer, caps):
    return _grammar(tokenizer, caps)


def _accepts_tokens(grammar: PlanGrammar, tokenizer, text: str) -> bool:
    """Feed `text` as the model would write it (its natural tokens), checking each against the mask."""
    c = grammar.constraint()
    for tid in tokenizer.encode(text, add_special_tokens=False):
        mask = c.fill_next_token_bitmask()
        if not (int(mask[0, tid >> 5]) >> (tid & 31)) & 1:
            return False
        if not c.accept_token(tid):
            return False
    return c.is_completed()


CANONICAL = [
    dict(reply="Looking for the red cup.", phrases=["red cup"],
         steps=[{"action": "search", "target": "red cup"},
                {"action": "approach", "target": "red cup", "stop_distance_m": 0.5},
                {"action": "come_back"}]),
    dict(reply="I can't pick things up: this robot has no arm.", phrases=[], steps=[], declined=True),
    dict(reply="Turning.", phrases=[], steps=[{"action": "turn", "degrees": -360}, {"action": "turn", "degrees": 360}]),
    dict(reply="Backing up, then waiting.", phrases=[],
         steps=[{"action": "move", "meters": -5.0}, {"action": "wait", "seconds": 30.0}, {"action": "stop"}]),
    dict(reply="Let me look for both.", phrases=["blue box", "person", "o'neil's 2nd-hand chair"],
         steps=[{"action": "report", "target": "blue box"}, {"action": "report", "target": "person"},
                {"action": "search", "target": "o'neil's 2nd-hand chair"},
                {"action": "approach", "target": "o'neil's 2nd-hand chair", "stop_distance_m": 2.0},
                {"action": "move", "meters": 0.25}, {"action": "stop"}]),
    dict(reply="Très bien, je cherche la tasse rouge. 好的", phrases=["red cup", "x" * 40],
         steps=[{"action": "search", "target": "x" * 40}]),
    dict(reply="Hello! I'm a robot with a camera.", phrases=[], steps=[]),
]


@pytest.mark.parametrize("data", CANONICAL, ids=range(len(CANONICAL)))
def test_grammar_accepts_canonical_plans_in_the_models_own_tokens(grammar, tokenizer, caps, data):
    # The dataset's targets are plan.to_json(): the grammar must let the model write them byte for byte.
    text = make_plan(caps, **data).to_json()
    assert _accepts_tokens(grammar, tokenizer, text), text


@pytest.mark.parametrize("text", [
    '{"reply":"x","phrases":[],"steps":[{"action":"turn","degrees":361}],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"turn","degrees":90.5}],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"move","meters":5.01}],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"wait","seconds":-1.0}],"declined":false}',
    '{"reply":"x","phrases":["a"],"steps":[{"action":"approach","target":"a","stop_distance_m":0.1}],"declined":false}',
    '{"reply":"x","phrases":["Red Cup"],"steps":[],"declined":false}',
    '{"reply":"x","phrases":["' + "a" * 41 + '"],"steps":[],"declined":false}',
    '{"reply":"x","phrases":["a","b","c","d","e"],"steps":[],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[' + ",".join(['{"action":"stop"}'] * 7) + '],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"fly"}],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"stop","speed":10}],"declined":false}',
    '{"reply":"' + "a" * 201 + '","phrases":[],"steps":[],"declined":false}',
    '{"reply":"","phrases":[],"steps":[],"declined":false}',
    '{"reply":"a\\"b","phrases":[],"steps":[],"declined":false}',
    '{"reply":"a\tb","phrases":[],"steps":[],"declined":false}',
    '{"reply": "x", "phrases": [], "steps": [], "declined": false}',
    '{"phrases":[],"reply":"x","steps":[],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[]}',
    '{"reply":"x","phrases":["cup"],"steps":[{"action":"approach","target":"cup"}],"declined":false}',
    # cross-field rules: target not among phrases, duplicate phrase, declined with steps, target without phrases
    '{"reply":"x","phrases":["red cup"],"steps":[{"action":"search","target":"blue cup"}],"declined":false}',
    '{"reply":"x","phrases":["cup","cup"],"steps":[],"declined":false}',
    '{"reply":"x","phrases":[],"steps":[{"action":"stop"}],"declined":true}',
    '{"reply":"x","phrases":[],"steps":[{"action":"report","target":"cup"}],"declined":false}',
])
def test_grammar_refuses_what_the_robot_must_not_get(grammar, tokenizer, text):
    assert not _accepts_tokens(grammar, tokenizer, text)


def test_schema_and_grammar_follow_the_capabilities(tokenizer):
    schema = grammar_schema(NO_MOVE)
    actions = {d["properties"]["action"]["const"] for d in schema["$defs"].values()}
    assert actions == {"search", "approach", "turn", "report", "stop"}
    assert "move" not in json.dumps(schema)
    assert plan_rules(NO_MOVE).target_actions == {b"search", b"approach", b"report"}
    g = _grammar(tokenizer, NO_MOVE)
    ok = make_plan(NO_MOVE, reply="Turning.", phrases=[], steps=[{"action": "turn", "degrees": 90}]).to_json()
    assert _accepts_tokens(g, tokenizer, ok)
    moving = '{"reply":"x","phrases":[],"steps":[{"action":"move","meters":1.0}],"declined":false}'
    assert not _accepts_tokens(g, tokenizer, moving)
    # a robot with tighter limits gets a tighter grammar
    slow = Capabilities(limits={"max_turn_deg": 45, "max_steps": 2})
    g = _grammar(tokenizer, slow)
    assert _accepts_tokens(g, tokenizer, '{"reply":"x","phrases":[],"steps":[{"action":"turn","degrees":45}],"declined":false}')
    assert not _accepts_tokens(g, tokenizer, '{"reply":"x","phrases":[],"steps":[{"action":"turn","degrees":90}],"declined":false}')
    assert not _accepts_tokens(g, tokenizer, '{"reply":"x","phrases":[],"steps":[{"action":"stop"},{"action":"stop"},{"action":"stop"}],"declined":false}')


def test_every_length_bound_is_enforced_while_decoding(caps):
    # xgrammar ignores maxLength next to a pattern, so the tracker counts every bounded string.
    assert unenforced_string_bounds(caps) == []
    rules = plan_rules(caps)
    assert rules.max_chars == {b"reply": 200, b"phrase": caps.limits.max_phrase_chars}
    assert "maxLength" not in json.dumps(grammar_schema(caps))


def test_random_walks_under_the_grammar_always_give_valid_plans(grammar, caps):
    """Whatever token a model picks among the allowed ones, the finished text is a valid plan."""
    rng = random.Random(1)
    vocab = grammar.vocab
    seen_actions: set[str] = set()
    for _ in range(40):
        c = grammar.constraint()
        ids: list[int] = []
        for _ in range(2000):
            mask = c.fill_next_token_bitmask()
            assert not c.dead_end, bytes(b"".join(vocab.token_bytes[i] for i in ids))
            words = mask[0].tolist()
            allowed = [w * 32 + b for w, word in enumerate(words) if word for b in range(32) if (word >> b) & 1]
            allowed = [t for t in allowed if t < vocab.size and vocab.token_bytes[t]]
            # prefer closing tokens now and then, so walks also finish strings early and reach the steps
            quoted = [t for t in allowed if b'"' in vocab.token_bytes[t] or b"]" in vocab.token_bytes[t]]
            tid = rng.choice(quoted if quoted and rng.random() < 0.5 else allowed)
            assert c.accept_token(tid)
            ids.append(tid)
            if c.is_completed():
                break
        text = b"".join(vocab.token_bytes[i] for i in ids).decode()
        assert c.is_completed(), text
        plan = parse_plan(text, caps)  # raises if invalid
        seen_actions.update(plan.actions)
    assert {"search", "approach", "report"} & seen_actions, seen_actions  # the walks reached targeted steps


def _plans(caps: Capabilities):
    """Hypothesis strategy: any valid plan of the dataset's kind (numbers with at most 2 decimals,
    replies without quotes, backslashes or control characters)."""
    from hypothesis import strategies as st

    lim = caps.limits
    reply = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\'),
                    min_size=1, max_size=200)
    phrase = st.from_regex(r"[a-z0-9][a-z0-9 '\-]{0,39}", fullmatch=True)

    def steps_for(phrases: list[str]):
        def step(action: str):
            if action in ("search", "report"):
                return st.fixed_dictionaries({"action": st.just(action), "target": st.sampled_from(phrases)})
            if action == "approach":
                lo, hi = lim.stop_distance_m
                return st.fixed_dictionaries({"action": st.just(action), "target": st.sampled_from(phrases),
                                              "stop_distance_m": st.integers(round(lo * 100), round(hi * 100))
                                              .map(lambda c: c / 100)})
            if action == "turn":
                return st.fixed_dictionaries({"action": st.just(action),
                                              "degrees": st.integers(-lim.max_turn_deg, lim.max_turn_deg)})
            if action == "move":
                m = round(lim.max_move_m * 100)
                return st.fixed_dictionaries({"action": st.just(action),
                                              "meters": st.integers(-m, m).map(lambda c: c / 100)})
            if action == "wait":
                return st.fixed_dictionaries({"action": st.just(action), "seconds": st.integers(
                    0, round(lim.max_wait_s * 10)).map(lambda c: c / 10)})
            return st.just({"action": action})

        usable = [a for a in caps.actions if phrases or a not in ("search", "approach", "report")]
        return st.lists(st.sampled_from(usable).flatmap(step), max_size=lim.max_steps)

    @st.composite
    def plan(draw):
        phrases = draw(st.lists(phrase, max_size=lim.max_phrases, unique=True))
        steps = draw(steps_for(phrases))
        declined = draw(st.booleans()) if not steps else False
        return make_plan(caps, reply=draw(reply), phrases=phrases, steps=steps, declined=declined)

    return plan()


def test_every_valid_plan_can_be_written_under_the_grammar(grammar, tokenizer, caps):
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
    @given(_plans(caps))
    def check(plan):
        assert _accepts_tokens(grammar, tokenizer, plan.to_json()), plan.to_json()

    check()
