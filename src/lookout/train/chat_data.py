"""Chat data for training: JSONL conversations -> token rows with labels on assistant turns only.

A row is `{"input_ids", "labels", "position_ids"}` (lists of ints). Labels are -100 everywhere
except the tokens of assistant turns (content and the template's end-of-turn token, so the model
learns to stop). Packing concatenates short rows into rows of at most `max_seq_length` tokens;
position ids restart at 0 for every conversation, and transformers turns restarting position
ids into a block-diagonal causal mask (`masking_utils.find_packed_sequence_indices`, or varlen
with flash-attention), so packed conversations never attend to each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "tool", "ipython")

Message = dict[str, str]
Row = dict[str, list[int]]


class DataFormatError(ValueError):
    """A training file line that is not a valid conversation; the message names file and line."""


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot mark assistant turns (no template, or not prefix-stable)."""


def _check_conversation(obj: Any) -> list[Message]:
    if not isinstance(obj, dict) or "messages" not in obj:
        raise ValueError('expected an object with a "messages" list, e.g. {"messages": [{"role": "user", ...}]}')
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f'message {i} must be {{"role": str, "content": str}}, got {json.dumps(m)[:80]}')
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has role {m['role']!r}; expected one of {', '.join(ROLES)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant message: nothing to learn from this conversation")
    if messages[0]["role"] == "assistant":
        raise ValueError("the conversation starts with an assistant message; it needs a user turn first")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def load_conversations(path: str | Path) -> list[list[Message]]:
    """Read a JSONL file of `{"messages": [...]}` rows; errors name the line and the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} not found")
    conversations = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            try:
                conversations.append(_check_conversation(obj))
            except ValueError as exc:
                raise DataFormatError(f"{path}:{lineno}: {exc}") from None
    if not conversations:
        raise DataFormatError(f"{path}: no conversations (the file is empty)")
    return conversations


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Turn i spans from the end of `render(messages[:i], add_generation_prompt=True)` to the end of
    `render(messages[:i+1])`, which works for any template whose renderings of a conversation's
    prefixes are prefixes of the whole (Llama 3.x's are).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError("the tokenizer has no chat_template; use an Instruct model's tokenizer")
    text = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not (upto.startswith(before) and text.startswith(upto)):
            raise ChatTemplateError(
                "the chat template renders a conversation's prefix differently from the whole "
                "conversation, so assistant turns cannot be located"
            )
        spans.append((len(before), len(upto)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: Sequence[Message]) -> Row:
    """Token ids of the templated conversation and labels on assistant-turn tokens only."""
    if not getattr(tokenizer, "is_fast", False):
        raise ChatTemplateError("a fast tokenizer is needed (it maps tokens back to characters)")
    text, spans = assistant_spans(tokenizer, messages)
    # The template already writes <|begin_of_text|>: do not let the tokenizer add another.
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, end) in enumerate(enc["offset_mapping"]):
        if end > start and any(s <= start < e for s, e in spans):
            labels[j] = ids[j]
    return {"input_ids": ids, "labels": labels, "position_ids": list(range(len(ids)))}


@dataclass
class DataStats:
    conversations: int = 0
    rows: int = 0
    tokens: int = 0
    label_tokens: int = 0
    truncated: int = 0
    dropped_no_labels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def build_rows(
    tokenizer: Any, conversations: Iterable[Sequence[Message]], max_seq_length: int, pack: bool = True
) -> tuple[list[Row], DataStats]:
    """Tokenize, truncate to `max_seq_length`, drop rows without labels, optionally pack."""
    stats = DataStats()
    rows = []
    for messages in conversations:
        stats.conversations += 1
        row = tokenize_conversation(tokenizer, messages)
        if len(row["input_ids"]) > max_seq_length:
            stats.truncated += 1
            row = {k: v[:max_seq_length] for k, v in row.items()}
        if count_label_tokens(row["labels"]) == 0:
            stats.dropped_no_labels += 1
            continue
        rows.append(row)
    if pack:
        rows = pack_rows(rows, max_seq_length)
    stats.rows = len(rows)
    stats.tokens = sum(len(r["input_ids"]) for r in rows)
    stats.label_tokens = sum(count_label_tokens(r["labels"]) for r in rows)
    return rows, stats


def pack_rows(rows: Sequence[Row], max_seq_length: int) -> list[Row]:
    """First-fit-decreasing packing into rows of at most `max_seq_length` tokens (deterministic).

    Each conversation keeps its own position ids (0, 1, ...) and its first token gets label -100,
    so no token is trained to predict the start of the next conversation.
    """
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i]["input_ids"]), i))
    if order and len(rows[order[0]]["input_ids"]) > max_seq_length:  # the longest row comes first
        raise ValueError(f"row {order[0]} has {len(rows[order[0]]['input_ids'])} tokens, more than max_seq_length "
                         f"{max_seq_length}")
    bins: list[list[int]] = []
    room = _RoomTree(len(rows), max_seq_length)
    for i in order:
        n = len(rows[i]["input_ids"])
        b = room.first_fit(n)  # the lowest bin with room: an open one, else the next empty one
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        room.take(b, n)
    packed = []
    for members in bins:
        out: Row = {"input_ids": [], "labels": [], "position_ids": []}
        for i in members:
            r = rows[i]
            out["input_ids"] += r["input_ids"]
            out["labels"] += [IGNORE_INDEX] + r["labels"][1:]
            out["position_ids"] += list(range(len(r["input_ids"])))
        packed.append(out)
    return packed


class _RoomTree:
    """Free room of `n` bins in a max segment tree: the lowest bin with room >= k in O(log n).

    First-fit scanned every open bin for every row: quadratic, minutes for 100k conversations.
    """

    def __init__(self, n: int, capacity: int) -> None:
        self.size = 1 << max(0, (n - 1).bit_length())
        self.tree = [capacity] * (2 * self.size)

    def first_fit(self, k: int) -> int:
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= k else 2 * node + 1
        return node - self.size

    def take(self, leaf: int, k: int) -> None:
        node = leaf + self.size
        self.tree[node] -= k
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2


def count_label_tokens(labels: Sequence[int]) -> int:
    """Tokens that contribute to the loss after HF's shift (the first label is never a target)."""
    return sum(1 for y in labels[1:] if y != IGNORE_INDEX)


def collate(rows: Sequence[Row], pad_token_id: int, pad_to_multiple_of: int = 1) -> dict[str, Any]:
    """Right-pad rows into tensors. Padding is its own segment (positions 0, 1, ...; labels -100)
    after the real tokens, so it never changes what real tokens see and no attention mask is needed.
    """
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids, labels, pos = [], [], []
    for r in rows:
        pad = width - len(r["input_ids"])
        ids.append(r["input_ids"] + [pad_token_id] * pad)
        labels.append(r["labels"] + [IGNORE_INDEX] * pad)
        pos.append(r["position_ids"] + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
    }
