"""Chat data: assistant-only labels, clear data errors, packing without cross-attention."""

from __future__ import annotations

import json

import pytest
import torch

from lookout.train.chat_data import (
    IGNORE_INDEX,
    ChatTemplateError,
    DataFormatError,
    build_rows,
    collate,
    count_label_tokens,
    load_conversations,
    pack_rows,
    tokenize_conversation,
)


def _labelled_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, y in zip(row["input_ids"], row["labels"], strict=True) if y != IGNORE_INDEX])


def test_labels_cover_exactly_the_assistant_turns_and_their_end_of_turn(tokenizer, conversations):
    for messages in conversations:
        row = tokenize_conversation(tokenizer, messages)
        expected = "".join(m["content"] + "<|eot_id|>" for m in messages if m["role"] == "assistant")
        assert _labelled_text(tokenizer, row) == expected
        assert tokenizer.decode(row["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
        assert row["input_ids"].count(tokenizer.convert_tokens_to_ids("<|begin_of_text|>")) == 1
        assert row["position_ids"] == list(range(len(row["input_ids"])))


def test_user_text_equal_to_the_reply_is_still_not_labelled(tokenizer):
    row = tokenize_conversation(tokenizer, [{"role": "user", "content": "stop"}, {"role": "assistant", "content": "stop"}])
    assert _labelled_text(tokenizer, row) == "stop<|eot_id|>"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "hi"}', '"messages"'),
        ('{"messages": []}', "non-empty"),
        ('{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}', "role 'robot'"),
        ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}', "message 0"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}', "starts with an assistant"),
    ],
)
def test_bad_data_line_names_the_line_and_the_reason(tmp_path, line, reason):
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path = tmp_path / "d.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DataFormatError) as err:
        load_conversations(path)
    assert f"{path}:3:" in str(err.value) and reason in str(err.value)


def test_missing_or_empty_data_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_conversations(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="empty"):
        load_conversations(tmp_path / "empty.jsonl")


def test_tokenizer_without_chat_template_is_refused(tokenizer, conversations):
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer)
    with pytest.raises(ChatTemplateError, match="chat_template"):
        tokenize_conversation(bare, conversations[0])


def test_packing_fills_rows_restarts_positions_and_keeps_every_token(tokenizer, conversations):
    rows = [tokenize_conversation(tokenizer, m) for m in conversations * 5]
    max_len = max(len(r["input_ids"]) for r in rows) * 2 + 7
    packed = pack_rows(rows, max_len)
    assert len(packed) < len(rows)
    assert all(len(p["input_ids"]) <= max_len for p in packed)
    assert sum(len(p["input_ids"]) for p in packed) == sum(len(r["input_ids"]) for r in rows)
    # every conversation starts at position 0 and its first token is never a target
    starts = [i for p in packed for i, pos in enumerate(p["position_ids"]) if pos == 0]
    assert len(starts) == len(rows)
    for p in packed:
        for i, pos in enumerate(p["position_ids"]):
            if pos == 0:
                assert p["labels"][i] == IGNORE_INDEX
    assert sum(count_label_tokens(p["labels"]) for p in packed) == sum(count_label_tokens(r["labels"]) for r in rows)


def test_packing_is_first_fit_decreasing_and_refuses_overlong_rows() -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    rows = [{"input_ids": [k] * n, "labels": [k] * n, "position_ids": list(range(n))} for k, n in enumerate(lengths)]
    bins: list[list[int]] = []  # the plain quadratic first-fit-decreasing, as reference
    for i in sorted(range(len(rows)), key=lambda i: (-lengths[i], i)):
        fit = next((b for b in bins if sum(lengths[j] for j in b) + lengths[i] <= 128), None)
        if fit is None:
            bins.append(fit := [])
        fit.append(i)
    packed = pack_rows(rows, 128)
    assert [list(dict.fromkeys(p["input_ids"])) for p in packed] == bins
    with pytest.raises(ValueError, match="more than max_seq_length 99"):
        pack_rows(rows, 99)


def test_build_rows_truncates_long_conversations_and_counts(tokenizer, conversations):
    rows, stats = build_rows(tokenizer, conversations, max_seq_length=48, pack=False)
    assert stats.conversations == 4 and stats.truncated >= 1
    assert all(len(r["input_ids"]) <= 48 for r in rows)
    assert stats.rows + stats.dropped_no_labels == 4


def test_collate_pads_as_a_separate_segment(tokenizer, conversations):
    rows = [tokenize_conversation(tokenizer, m) for m in conversations[:2]]
    batch = collate(rows, tokenizer.pad_token_id, pad_to_multiple_of=8)
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0
    short = min(rows, key=lambda r: len(r["input_ids"]))
    i = rows.index(short)
    n = len(short["input_ids"])
    assert batch["position_ids"][i, n:].tolist() == list(range(width - n))
    assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][i, n:] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("use_kernels", [True, False], ids=["patched", "hf"])
def test_packed_row_gives_the_same_per_token_loss_as_separate_sequences(make_model, conversations, use_kernels):
    model, tok = make_model(use_kernels=use_kernels)
    model.eval()
    rows = [tokenize_conversation(tok, m) for m in conversations[:3]]
    packed = pack_rows(rows, sum(len(r["input_ids"]) for r in rows))
    assert len(packed) == 1

    def token_nll(batch):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[0, :-1], batch["labels"][0, 1:], ignore_index=IGNORE_INDEX, reduction="none")
        return nll[batch["labels"][0, 1:] != IGNORE_INDEX]

    separate = torch.cat([token_nll(collate([r], tok.pad_token_id)) for r in _packing_order(rows, packed[0])])
    together = token_nll(collate(packed, tok.pad_token_id))
    assert together.shape == separate.shape and together.numel() > 20
    torch.testing.assert_close(together, separate, rtol=1e-5, atol=1e-5)

    # and the fused training loss of the packed row equals the token-weighted mean of the separate ones
    n = together.numel()
    with torch.no_grad():
        loss = model(**collate(packed, tok.pad_token_id), num_items_in_batch=n).loss
    torch.testing.assert_close(loss, separate.mean(), rtol=1e-5, atol=1e-5)


def _packing_order(rows, packed_row):
    """The rows in the order the packer placed them (matched by their token ids)."""
    ids, out, i = packed_row["input_ids"], [], 0
    remaining = list(rows)
    while i < len(ids):
        r = next(r for r in remaining if ids[i : i + len(r["input_ids"])] == r["input_ids"])
        remaining.remove(r)
        out.append(r)
        i += len(r["input_ids"])
    return out


def test_labels_agree_with_the_generation_tags_of_the_project_template(tokenizer, conversations):
    """The project's own Llama-3-style template marks assistant turns with {% generation %}: the
    tokenizer's assistant mask from those tags and our prefix-based labels must pick the same tokens."""
    import copy

    from lookout.agent.chat_template import LLAMA3_CHAT_TEMPLATE

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    for messages in conversations:
        row = tokenize_conversation(tok, messages)
        enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        assert enc["input_ids"] == row["input_ids"]
        assert enc["assistant_masks"] == [int(y != IGNORE_INDEX) for y in row["labels"]]
