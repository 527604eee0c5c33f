"""Untrusted text handling, the chat template, and the config that the node and the CLI share."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lookout.agent.chat_template import LLAMA3_CHAT_TEMPLATE, LLAMA3_SPECIAL_TOKENS
from lookout.agent.commands import is_stop_command, sanitize_command
from lookout.agent.config import AgentConfig, descriptions, flatten, unflatten
from lookout.agent.dialogue import Dialogue


def test_commands_are_cleaned_and_truncated():
    c = sanitize_command("  find\x00 the\u202e red\tcup\x1b[31m \n ", 100)
    assert c.text == "find the red cup [31m" and not c.truncated
    long = sanitize_command("a" * 10_000, 500)
    assert len(long.text) == 500 and long.truncated and long.original_chars == 10_000
    assert sanitize_command("ｆｉｎｄ", 50).text == "find"  # NFKC folds look-alike characters
    assert sanitize_command("", 50).text == ""


@pytest.mark.parametrize(("said", "read"), [
    ("FIND THE RED BALL!", "Find the red ball!"),
    ("Go To The Blue Cube And Stop There", "Go to the blue cube and stop there"),
    ("  TURN LEFT 45 DEGREES", "Turn left 45 degrees"),
    ("Move Back 0.5m Please", "Move back 0.5m please"),
    ("\"GO\" NOW", "\"Go\" now"),
    # any other mix of cases is the user's own and stays
    ("Find the red ball", "Find the red ball"),
    ("find the TV remote", "find the TV remote"),
    ("OK", "OK"),
    ("Robot, find the Red Ball", "Robot, find the Red Ball"),
])
def test_shouted_and_title_case_commands_are_read_in_sentence_case(said, read):
    assert sanitize_command(said, 100).text == read


@pytest.mark.parametrize("text", ["stop", "STOP!", "please stop now", "halt", "stop moving", "Stopp", "cancel",
                                  "just stop", "ok, just stop.", "No, stop right there!", "hey robot stop",
                                  "stop it already", "freeze right here"])
def test_stop_words(text):
    assert is_stop_command(text)


@pytest.mark.parametrize("text", ["stop at the red door", "don't stop", "find the stop sign", "", "   ",
                                  "just stop by the chair", "no need to stop", "stop there and turn left"])
def test_not_stop_words(text):
    assert not is_stop_command(text)


def test_chat_template_renders_llama3_headers_and_marks_assistant_turns(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models["random"])
    assert tok.chat_template == LLAMA3_CHAT_TEMPLATE
    for special in LLAMA3_SPECIAL_TOKENS:
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": " hi "},
            {"role": "assistant", "content": '{"reply":"x"}'}, {"role": "user", "content": "more"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                    '<|start_header_id|>assistant<|end_header_id|>\n\n{"reply":"x"}<|eot_id|>'
                    "<|start_header_id|>user<|end_header_id|>\n\nmore<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(kept) == '{"reply":"x"}<|eot_id|>'


def test_config_file_and_flat_parameters_agree():
    cfg = AgentConfig.default()
    assert cfg == AgentConfig.model_validate(unflatten(flatten(cfg)))
    flat = flatten(cfg)
    assert set(descriptions()) == set(flat) and all(descriptions().values())
    assert flat["perception.object_heights_m"][0] == "cup=0.1"
    changed = AgentConfig.model_validate(unflatten({**flat, "control.rate_hz": 30, "model.device": "cpu"}))
    assert changed.control.rate_hz == 30 and changed.model.device == "cpu"
    with pytest.raises(ValueError):
        AgentConfig.model_validate(unflatten({**flat, "control.rate_hz": -1}))
    with pytest.raises(ValueError):
        AgentConfig.model_validate({"model": {"no_such_key": 1}})


def test_ros_parameter_files_load_too(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("agent:\n  ros__parameters:\n    control.rate_hz: 20.0\n    model.base: /models/x\n")
    cfg = AgentConfig.from_yaml(path)
    assert cfg.control.rate_hz == 20.0 and cfg.model.base == "/models/x"


def test_dialogue_keeps_the_last_turns():
    d = Dialogue(max_turns=3)
    for i in range(5):
        d.add(f"u{i}", f"a{i}")
    assert [t.user for t in d.last(10)] == ["u2", "u3", "u4"]
    assert [t.assistant for t in d.last(2)] == ["a3", "a4"] and d.last(0) == []
