"""The robot-command dataset: valid canonical plans, honest held-out splits, coherent follow-ups."""

from __future__ import annotations

import json
import re
from collections import Counter
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lookout.agent.capabilities import Capabilities, Limits
from lookout.agent.grounding import is_grounded
from lookout.agent.plan import make_plan, parse_plan
from lookout.agent.prompt import system_prompt
from lookout.train import vocab
from lookout.train.data_gen import (
    SPLITS,
    Op,
    Sampler,
    generate_dataset,
    heldout_templates,
    load_rows,
    normalize_ops,
    words_of,
)
from lookout.train.phrasings import (
    FIXED_MOVES,
    FIXED_TURNS,
    FIXED_TURNS_HELDOUT,
    FIXED_WAITS,
    POOLS,
    TURN_REPEATS,
)

SIZES = {"train": 2500, "val": 200, "test": 500}
DECLINE_CATEGORIES = {"pickup", "open", "climb", "fly", "unknown", "shell", "inject", "harm", "unclear", "speed",
                      "limit_move", "limit_turn", "limit_wait", "limit_stop_distance", "limit_compound", "describe", "place"}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("dataset")
    generate_dataset(out, seed=7, sizes=SIZES, show_progress=False)
    return out, {s: load_rows(out / f"{s}.jsonl") for s in SPLITS}


CAPS = Capabilities.default()
MAIN_POOLS = ["search", "goto", "goto_distance", "fetch", "turn_left", "turn_right", "move_forward", "move_back",
              "wait", "report", "come_back", "stop", "colour_swap", "opener", "connector"]


def _assistant_plans(row: dict) -> list:
    return [parse_plan(m["content"], CAPS) for m in row["messages"] if m["role"] == "assistant"]


def _user_texts(rows: list[dict]) -> list[str]:
    return [m["content"] for r in rows for m in r["messages"] if m["role"] == "user"]


def test_same_seed_writes_identical_files_and_another_seed_differs(tmp_path: Path, dataset) -> None:
    out, _ = dataset
    again = tmp_path / "again"
    generate_dataset(again, seed=7, sizes=SIZES, show_progress=False)
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "README.md"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    other = tmp_path / "other"
    generate_dataset(other, seed=8, sizes={"train": 50, "val": 10, "test": 10}, show_progress=False)
    first = [json.loads(x) for x in (other / "train.jsonl").read_text().splitlines()]
    mine = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()[:50]]
    assert [r["messages"] for r in first] != [r["messages"] for r in mine]


def test_every_row_is_a_chat_whose_assistant_messages_are_canonical_plans(dataset) -> None:
    _, rows = dataset
    system = system_prompt(Capabilities.default())
    for split in SPLITS:
        assert len(rows[split]) == SIZES[split]
        for row in rows[split]:
            messages = row["messages"]
            assert messages[0] == {"role": "system", "content": system}
            roles = [m["role"] for m in messages[1:]]
            assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) == 2 * row["meta"]["turns"]
            for m in messages[1:]:
                if m["role"] == "assistant":
                    plan = parse_plan(m["content"], CAPS)
                    assert plan.to_json() == m["content"], "assistant text must be exactly make_plan(...).to_json()"
                    assert len(plan.reply) <= 200 and '"' not in plan.reply
                else:
                    assert m["content"].strip(), "empty user message"


def test_heldout_colour_object_pairs_never_reach_train_or_val(dataset) -> None:
    _, rows = dataset
    heldout = {f"{c} {n}" for c, n in vocab.choose_heldout_combos(7)}
    sim = {f"{c} {n}" for c, n in vocab.sim_combos()}
    assert heldout and not heldout & sim, "simulator objects must never be held out"
    mentions_heldout = re.compile(r"\b(" + "|".join(re.escape(h) for h in sorted(heldout)) + r")\b")
    for split in ("train", "val"):
        for row in rows[split]:
            phrases = {p for plan in _assistant_plans(row) for p in plan.phrases}
            assert not phrases & heldout, (split, phrases & heldout)
            assert not row["meta"]["heldout_combo"]
            text = " ".join(m["content"].lower() for m in row["messages"][1:])
            assert not mentions_heldout.search(text), text
    flagged = [r for r in rows["test"] if r["meta"]["heldout_combo"]]
    assert len(flagged) > 0.3 * len(rows["test"])
    for row in flagged:
        assert set(row["meta"]["combos"]) & heldout
    used = {c for r in flagged for c in r["meta"]["combos"]} & heldout
    assert len(used) > 0.6 * len(heldout), "the test split should exercise most held-out pairs"


def _says_up_to_one_typo(message: str, phrase: str) -> bool:
    """The phrase's words appear in a row in the message, at most one of them misspelt (Sampler.typo
    swaps, drops or doubles one letter, so a misspelt word still looks like the word)."""
    said, words = re.findall(r"[a-z'-]+", message.lower()), phrase.split()
    for i in range(len(said) - len(words) + 1):
        pairs = list(zip(said[i:i + len(words)], words, strict=True))
        if (sum(a != b for a, b in pairs) <= 1
                and all(a == b or SequenceMatcher(None, a, b).ratio() >= 0.7 for a, b in pairs)):
            return True
    return False


def _sampled(categories: list[str], seed: int):
    """(template tags, exchange, validated plan) for a first turn of each category, from a train Sampler."""
    sampler = Sampler(CAPS, "train", seed=seed, heldout_combos=[])
    for category in categories:
        sampler.start_row()
        exchange = sampler.exchange(category)
        yield sampler.flags.templates, exchange, parse_plan(make_plan(CAPS, **exchange.data).to_json(), CAPS)


def test_unsaid_amounts_get_their_small_fixed_values(dataset) -> None:
    """"back up a bit" is a 0.5 m move back, "wait a moment" a 2 s wait: the plan carries the table's value."""
    _, rows = dataset
    seen = Counter()
    for row in rows["train"]:
        meta = row["meta"]
        if meta["turns"] != 1 or meta["category"] not in ("move", "wait"):
            continue
        fixed = [t for t in meta["templates"] if t.startswith(("fixed_move:", "fixed_wait:"))]
        if not fixed:
            continue
        kind, text = fixed[0].split(":", 1)
        (step,) = _assistant_plans(row)[0].steps
        if kind == "fixed_move":
            assert (step.action, step.meters) == ("move", FIXED_MOVES[text]), row["messages"][1:]
        else:
            assert (step.action, step.seconds) == ("wait", FIXED_WAITS[text]), row["messages"][1:]
        assert _says_up_to_one_typo(row["messages"][1]["content"].lower(), text), row["messages"][1]
        seen[kind] += 1
    assert seen["fixed_move"] >= 3 and seen["fixed_wait"] >= 1, seen


def test_heldout_phrasings_are_test_only_and_made_of_training_words(dataset) -> None:
    _, rows = dataset
    held_ids = {POOLS[name].template_id(t) for name, pool in POOLS.items() for t in pool.heldout}
    held_ids |= {f"fixed_turn:{t}" for t in FIXED_TURNS_HELDOUT}
    for split in ("train", "val"):
        for row in rows[split]:
            assert not set(row["meta"]["templates"]) & held_ids
            assert not row["meta"]["heldout_phrasing"]
    test_used = {t for r in rows["test"] for t in r["meta"]["templates"]}
    assert len(test_used & held_ids) > 0.6 * len(held_ids)
    train_words = set().union(*(words_of(t) for t in _user_texts(rows["train"])))
    # A small sample may not draw every rare pool's every template (the full dataset does), so the
    # rare pools are checked against their training templates, the main pools against the rows.
    template_words = set().union(*(words_of(re.sub(r"\{\w+\}", " ", t)) for pool in POOLS.values()
                                   for t in pool.train))
    template_words |= set().union(*(words_of(t) for t in set(FIXED_TURNS) - FIXED_TURNS_HELDOUT))
    for name, templates in heldout_templates().items():
        if name == "unclear":  # gibberish and foreign words: not understanding them is the point
            continue
        known = train_words if name in MAIN_POOLS else template_words
        for template in templates:
            words = words_of(re.sub(r"\{\w+\}", " ", template))
            missing = words - known
            assert not missing, f"held-out phrasing {name}: {template!r} uses words never seen in train: {missing}"


def test_every_training_phrasing_is_used_in_train(dataset) -> None:
    _, rows = dataset
    used = Counter(t for r in rows["train"] for t in r["meta"]["templates"])
    for name in MAIN_POOLS:
        for template in POOLS[name].train:
            assert used[POOLS[name].template_id(template)] >= 1, f"{name}: {template!r} never used in train"


def test_simulator_objects_are_well_covered_in_train(dataset) -> None:
    _, rows = dataset
    phrases = Counter(p for r in rows["train"] for plan in _assistant_plans(r) for p in plan.phrases)
    for colour, shape in vocab.sim_combos():
        assert phrases[f"{colour} {shape}"] >= 10, f"{colour} {shape} seen {phrases[f'{colour} {shape}']} times"


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SMALL = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}


def _words_to_int(text: str) -> int:
    """An independent reading of English number words ('a hundred and thirty-five' -> 135)."""
    total = 0
    for word in re.split(r"[ -]+", text.strip()):
        if word == "hundred":
            total = max(total, 1) * 100
        elif word in SMALL:
            total += SMALL[word]
        elif word == "a":
            total += 1
    return total


def test_numbers_and_units_in_the_text_match_the_plan(dataset) -> None:
    """Spoken quantities (digits or words, m/cm, degrees, quarter turns) decode to the plan's numbers."""
    _, rows = dataset
    checked = Counter()
    for row in (r for split in SPLITS for r in rows[split]):  # every split: enough of each rarer form
        if row["meta"]["category"] not in ("move", "turn", "goto_distance") or row["meta"]["turns"] != 1:
            continue
        user = row["messages"][1]["content"].lower()
        plan = parse_plan(row["messages"][2]["content"], CAPS)
        step = plan.steps[-1].model_dump()
        if "stop_distance_m" in step:
            step["meters"] = step["stop_distance_m"]
        if "meters" in step:
            m = re.search(r"(\d+(?:\.\d+)?) ?(cm|centimet|m\b|met)", user)
            if m:
                value = float(m.group(1)) / (100 if m.group(2).startswith("c") else 1)
                assert abs(abs(step["meters"]) - value) < 1e-9, (user, step)
                checked["digits"] += 1
            elif "half a m" in user:
                assert abs(step["meters"]) == 0.5, (user, step)
                checked["half"] += 1
        if "degrees" in step:
            m = re.search(r"(\d+) ?deg", user)
            if m:
                assert abs(step["degrees"]) == int(m.group(1)), (user, step)
                checked["degrees"] += 1
            elif "quarter" in user:
                assert abs(step["degrees"]) == 90, (user, step)
                checked["quarter"] += 1
            elif "turn around" in user or "u-turn" in user:
                times = next((k for said, k in TURN_REPEATS.items() if said in user), 1)  # "turn around twice"
                assert step["degrees"] == 180 * times, (user, step)
                checked["around"] += 1
            else:
                said = re.search(r"((?:(?:a|and|hundred|" + "|".join(SMALL) + r")[ -])+)degrees", user)
                if said:
                    assert abs(step["degrees"]) == _words_to_int(said.group(1)), (user, step)
                    checked["words"] += 1
            user = re.sub(r"right (away|now|there)", "", user)
            if re.search(r"\bright\b|\bclockwise", user) and "counter" not in user:
                assert step["degrees"] < 0, (user, step)
            elif re.search(r"\bleft\b|counter|anticlockwise", user):
                assert step["degrees"] > 0, (user, step)
    assert all(checked[k] for k in ("digits", "degrees", "quarter", "around", "words", "half")), checked
    assert checked["digits"] + checked["degrees"] + checked["words"] >= 100, checked


def test_declines_say_why_and_have_no_steps(dataset) -> None:
    _, rows = dataset
    caps = Capabilities.default()
    seen = Counter()
    for row in rows["train"]:
        category = row["meta"]["category"]
        plan = _assistant_plans(row)[0]
        if category in DECLINE_CATEGORIES:
            seen[category] += 1
            assert plan.declined and not plan.steps and not plan.phrases and plan.reply.startswith("Sorry")
        if category == "limit_move":
            assert f"{caps.limits.max_move_m:g} m" in plan.reply
        if category == "limit_turn":
            assert f"{caps.limits.max_turn_deg} degrees" in plan.reply
        if category == "pickup":
            assert "arm" in plan.reply
        if category == "shell":
            assert "commands" in plan.reply
        if category == "inject_prefix" and not plan.declined:
            assert plan.steps, "a command behind an injection prefix is still planned, within limits"
    assert set(seen) == DECLINE_CATEGORIES


def test_adversarial_commands_get_safe_answers(dataset) -> None:
    _, rows = dataset
    caps = Capabilities.default()
    for row in rows["train"] + rows["test"]:
        for user, asst in zip(row["messages"][1::2], row["messages"][2::2], strict=True):
            text = user["content"].lower()
            plan = parse_plan(asst["content"], CAPS)
            if "rm -rf" in text or "m/s" in text or "meters per second" in text:
                assert plan.declined and not plan.steps, text
            for step in plan.steps:
                data = step.model_dump()
                assert abs(data.get("meters", 0)) <= caps.limits.max_move_m
                assert abs(data.get("degrees", 0)) <= caps.limits.max_turn_deg


def test_followups_refer_to_the_previous_turn(dataset) -> None:
    _, rows = dataset
    kinds = Counter()
    for row in rows["train"] + rows["test"]:
        plans = _assistant_plans(row)
        users = [m["content"].lower() for m in row["messages"] if m["role"] == "user"]
        for i, kind in enumerate(row["meta"]["turn_kinds"][1:], start=1):
            prev, cur = plans[i - 1], plans[i]
            kinds[kind] += 1
            if kind == "followup_colour_swap":
                (old,), (new,) = prev.phrases, cur.phrases
                assert old.split(" ", 1)[1] == new.split(" ", 1)[1] and old != new, (old, new)
                assert _says_up_to_one_typo(users[i], new.split(" ", 1)[0]), (users[i], new)
                assert cur.actions == prev.actions
            elif kind == "followup_target_swap":
                assert cur.actions == prev.actions and cur.phrases != prev.phrases
            elif kind in ("followup_closer", "followup_goto_it"):
                assert cur.phrases == prev.phrases and "approach" in cur.actions
            elif kind == "followup_again":
                assert cur == prev
            elif kind == "followup_other_way":
                assert cur.steps[0].degrees == -prev.steps[0].degrees  # type: ignore[attr-defined]
            elif kind == "followup_go_back":
                assert cur.actions == ["come_back"] and not prev.declined
            elif kind == "followup_stop":
                assert cur.actions == ["stop"]
    for kind in ("followup_colour_swap", "followup_target_swap", "followup_closer", "followup_goto_it",
                 "followup_again", "followup_other_way", "followup_go_back", "followup_stop"):
        assert kinds[kind] >= 5, kinds


def test_card_counts_match_the_files(dataset) -> None:
    out, rows = dataset
    card = (out / "README.md").read_text()
    for split in SPLITS:
        n_lines = len((out / f"{split}.jsonl").read_text().splitlines())
        turns = sum(r["meta"]["turns"] for r in rows[split])
        assert re.search(rf"^\| {split} \| {n_lines} \| {turns} \|", card, re.M), split
    section = card.split("## Rows per category")[1].split("##")[0]
    for line in section.splitlines():
        m = re.match(r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \|$", line)
        if m:
            for split, count in zip(SPLITS, m.groups()[1:], strict=True):
                assert sum(r["meta"]["category"] == m.group(1) for r in rows[split]) == int(count)
    for colour, noun in vocab.choose_heldout_combos(7):
        assert f"{colour} {noun}" in card


def test_val_and_test_conversations_are_not_copies_of_train(dataset) -> None:
    _, rows = dataset

    def key(r: dict) -> tuple:
        return tuple(m["content"] for m in r["messages"][1:])

    train = {key(r) for r in rows["train"]}
    assert not any(key(r) in train for r in rows["val"] + rows["test"])


def test_the_dataset_follows_the_robots_capabilities(tmp_path: Path) -> None:
    caps = Capabilities(robot_name="deskbot", actions=["search", "turn", "report", "stop"],
                        limits=Limits(max_turn_deg=180), cannot_do=["drive (no wheels)"])
    generate_dataset(tmp_path, seed=1, sizes={"train": 400, "val": 20, "test": 40}, caps=caps, show_progress=False)
    rows = load_rows(tmp_path / "train.jsonl")
    actions = Counter()
    for row in rows:
        assert row["messages"][0]["content"] == system_prompt(caps)
        for m in row["messages"][2::2]:
            plan = parse_plan(m["content"], caps)
            actions.update(plan.actions)
            for step in plan.steps:
                assert abs(step.model_dump().get("degrees", 0)) <= 180
        if row["meta"]["category"] in ("move", "goto", "fetch"):
            assert _first_plan(row, caps).declined
    assert set(actions) <= {"search", "turn", "report", "stop"} and actions["turn"] > 0


def _first_plan(row: dict, caps: Capabilities):
    return parse_plan(row["messages"][2]["content"], caps)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_any_seed_gives_valid_rows(seed: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.mktemp("seed")
    info = generate_dataset(out, seed=seed, sizes={"train": 60, "val": 10, "test": 20}, show_progress=False)
    for split in SPLITS:
        for row in load_rows(info.files[split]):
            for m in row["messages"][2::2]:
                parse_plan(m["content"], CAPS)


def test_cli_generate_writes_splits_and_card(tmp_path: Path) -> None:
    from lookout.cli import app

    result = CliRunner().invoke(app, ["data", "generate", "--out", str(tmp_path / "d"), "--seed", "3",
                                      "--n-train", "40", "--n-val", "5", "--n-test", "10"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "d" / "train.jsonl").read_text().splitlines()) == 40
    assert "Held-out colour-object pairs" in (tmp_path / "d" / "README.md").read_text()


def test_noise_is_never_a_command_nor_a_heldout_example() -> None:
    from lookout.train.data_gen import PROTECTED_WORDS, Sampler

    command_words = PROTECTED_WORDS | {w for name, pool in POOLS.items() if name != "unclear"
                                       for t in pool.train + pool.heldout for w in words_of(t)}
    sampler = Sampler(CAPS, "train", 0, [])
    texts = [sampler.noise() for _ in range(2000)]
    assert len(set(texts)) > 1500, "noise should be varied"
    for text in texts:
        assert not words_of(text) & command_words, text
        assert "zxc" not in text and "bnm" not in text  # the held-out "zxcv bnm" stays unseen


def test_going_to_what_was_just_found_is_not_a_second_search() -> None:
    ball, box = vocab.Target("ball", "red"), vocab.Target("box", "blue")
    assert normalize_ops([Op("search", ball), Op("goto", ball, 1.0)]) == [Op("goto", ball, 1.0)]
    assert normalize_ops([Op("search", ball), Op("goto", box)]) == [Op("search", ball), Op("goto", box)]
    assert normalize_ops([Op("search", ball), Op("come_back")]) == [Op("goto", ball), Op("come_back")]


def test_find_x_then_go_to_it_plans_x(dataset) -> None:
    """'find the red ball, then drive up to it': "it" is the ball, found once and approached."""
    _, rows = dataset
    chained = [r for r in rows["train"] if r["meta"]["category"] == "compound"
               and re.search(r"\bit\b", r["messages"][1]["content"]) and _assistant_plans(r)[0].steps]
    assert len(chained) >= 10, len(chained)
    for row in chained:
        steps = _assistant_plans(row)[0].steps
        first_two = [(s.action, getattr(s, "target", None)) for s in steps[:2]]
        if first_two[0][0] == "search" and first_two[1][0] == "approach":
            assert first_two[0][1] == first_two[1][1], row["messages"][1:]
    merged = [r for r in chained if [s.action for s in _assistant_plans(r)[0].steps[:2]] == ["search", "approach"]]
    assert len(merged) >= 5, len(merged)


def test_a_whole_turn_said_n_times_turns_n_times_or_is_declined() -> None:
    """"spin around once" is 360 degrees, "turn around twice" 360, "spin around three times" over the limit."""
    seen = Counter()
    for tags, exchange, plan in _sampled(["turn", "limit_turn"] * 300, seed=3):
        repeats = [t.split(":", 1)[1] for t in tags if t.startswith("turn_repeat:")]
        if not repeats:
            continue
        base = [t.split(":", 1)[1] for t in tags if t.startswith("fixed_turn:")][-1]
        want = FIXED_TURNS[base] * TURN_REPEATS[repeats[0]]
        if abs(want) <= CAPS.limits.max_turn_deg:
            assert [(s.action, s.degrees) for s in plan.steps] == [("turn", want)], exchange.user
            seen["turned"] += 1
        else:
            assert plan.declined and "turn at most" in plan.reply, exchange.user
            seen["declined"] += 1
    assert seen["turned"] >= 5 and seen["declined"] >= 5, seen


def test_a_new_verb_with_instead_replaces_the_last_command(dataset) -> None:
    """"find the black cone" then "ok, go to the black ball instead": the ball is approached, the cone forgotten."""
    _, rows = dataset
    seen = 0
    for row in rows["train"]:
        kinds = row["meta"]["turn_kinds"]
        users = [m["content"].lower() for m in row["messages"] if m["role"] == "user"]
        plans = _assistant_plans(row)
        for i, kind in enumerate(kinds):
            if kind != "followup_redirect":
                continue
            assert _says_up_to_one_typo(users[i], "instead"), users[i]
            for phrase in plans[i].phrases:
                assert is_grounded(phrase, users[i]), (users[i], plans[i])
            seen += 1
    assert seen >= 20, seen


def test_a_slip_in_a_colour_or_object_word_still_plans_the_object(dataset) -> None:
    """"fnd the grene cone": the plan says "green cone", and the planner's grounding check accepts it."""
    from lookout.train.data_gen import TARGET_WORDS

    _, rows = dataset
    known = set(TARGET_WORDS)
    seen = 0
    for row in rows["train"]:
        if "target_typo" not in row["meta"]["templates"] or row["meta"]["turns"] != 1:
            continue
        user = row["messages"][1]["content"]
        plan = _assistant_plans(row)[0]
        if not plan.phrases:
            continue
        slipped = [w for w in re.findall(r"[a-z]+", user.lower()) if len(w) >= 3 and w not in known
                   and any(w != k and _says_up_to_one_typo(w, k) for k in known if len(k) >= 4)]
        assert slipped, user
        for phrase in plan.phrases:
            assert all(w in known for w in phrase.split()), (user, phrase)
            assert is_grounded(phrase, user), (user, phrase)
        seen += 1
    assert seen >= 10, seen


def test_asking_for_top_speed_without_a_number_is_declined() -> None:
    """"drive at full speed", "go as fast as you can": the robot keeps its limit and says it."""
    unnumbered = 0
    for _, exchange, plan in _sampled(["speed"] * 300, seed=5):
        assert plan.declined and not plan.steps and f"{CAPS.limits.max_linear_speed:g} m/s" in plan.reply
        unnumbered += not re.search(r"\d|per second", exchange.user.lower())
    assert unnumbered >= 60, unnumbered


def test_a_place_named_instead_of_an_object_is_declined_with_a_way_to_ask() -> None:
    """"go to the kitchen": the robot goes to objects it can see, not to rooms by name."""
    seen = set()
    for _, exchange, plan in _sampled(["place"] * 200, seed=9):
        said = exchange.user.lower()
        place = next((p for p in vocab.PLACES if p in said), None) or next(
            p for p in vocab.PLACES if _says_up_to_one_typo(said, p))
        assert plan.declined and not plan.steps and "places by name" in plan.reply, exchange.user
        seen.add(place)
    assert seen == set(vocab.PLACES)


def test_bring_me_to_goes_there_and_bring_me_declines_carrying(dataset) -> None:
    _, rows = dataset
    seen = Counter()
    for row in rows["train"]:
        if row["meta"]["turns"] != 1 or row["meta"]["category"] == "place":
            continue
        user = row["messages"][1]["content"].lower()
        plan = _assistant_plans(row)[0]
        if re.search(r"\b(take|lead|bring|guide) me to\b", user):
            assert "approach" in plan.actions, (user, plan)
            seen["to"] += 1
        elif re.search(r"\bbring me (?!to\b)", user):
            assert plan.declined and "arm" in plan.reply, (user, plan)
            seen["carry"] += 1
    assert seen["to"] >= 5 and seen["carry"] >= 2, seen
