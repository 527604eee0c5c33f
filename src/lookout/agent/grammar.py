"""The decoding grammar of plans: xgrammar compiled from the plan's JSON schema, plus cross-field rules.

`grammar_schema(caps)` turns the pydantic plan schema into the schema the grammar is compiled from:
every property required and in the contract's key order (pydantic's `model_dump_json` writes all
fields, so the grammar produces exactly the dataset's canonical compact JSON), and control
characters, quotes and backslashes kept out of free text (pydantic rejects raw control characters;
without escapes the tracker always knows where a string ends). `PlanGrammar` compiles it once per
tokenizer; `PlanConstraint` is one decoding's state: the xgrammar matcher masks tokens that break
the syntax or a field's bounds, and `PlanTracker` masks those that break a rule the schema cannot
state to xgrammar: targets among the phrases, unique phrases, declined plans without steps, and
string lengths. Whatever slips through both, `parse_plan` still rejects afterwards.

What xgrammar 0.2.8 does with this schema (checked): integer and number `minimum`/`maximum`
become exact digit grammars (numbers with at most 6 decimals, no exponent), `maxItems`, `const`,
`pattern`, `additionalProperties: false` and key order are enforced; `maxLength` next to a
`pattern` is ignored (with a warning); a bounded repetition such as `{1,200}` compiles against a
128k vocabulary in tens of seconds instead of a fraction of one, and above 128 it fails to compile
("Check failed: per_rule_fsm_hashes"). Hence lengths are counted by the tracker.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xgrammar as xgr

from lookout.agent.capabilities import Capabilities
from lookout.agent.plan import plan_json_schema
from lookout.agent.plan_tracker import PlanRules, PlanTracker

# Compact JSON, the same bytes as pydantic's model_dump_json.
SEPARATORS = (",", ":")
# Free text (the reply): no control characters, no quote, no backslash.
FREE_TEXT_CLASS = '[^\\x00-\\x1f"\\\\]'


def grammar_schema(caps: Capabilities | None = None) -> dict[str, Any]:
    """The JSON schema the grammar is compiled from (see the module docstring for the changes)."""
    schema = copy.deepcopy(plan_json_schema(caps))

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "oneOf" in node:  # steps are disjoint by their `action` constant: anyOf is exact
                node["anyOf"] = node.pop("oneOf")
                node.pop("discriminator", None)
            props = node.get("properties")
            if isinstance(props, dict):
                node["required"] = list(props)
            if node.get("type") == "string" and "const" not in node and "enum" not in node:
                lo = node.pop("minLength", 0)
                node.pop("maxLength", None)  # counted by the tracker
                if "pattern" not in node:
                    node["pattern"] = f"^{FREE_TEXT_CLASS}{'+' if lo else '*'}$"
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(schema)
    return schema


def plan_rules(caps: Capabilities | None = None) -> PlanRules:
    """The rules the tracker enforces for this robot's schema: actions, which take a target, lengths."""
    schema = plan_json_schema(caps)
    actions: list[bytes] = []
    targeted: set[bytes] = set()
    for step in schema.get("$defs", {}).values():
        props = step.get("properties", {})
        action = props.get("action", {}).get("const")
        if action is None:
            continue
        actions.append(action.encode())
        if "target" in props:
            targeted.add(action.encode())
    reply, phrase = schema["properties"]["reply"], schema["properties"]["phrases"]["items"]
    max_chars = {b"reply": reply.get("maxLength"), b"phrase": phrase.get("maxLength")}
    min_chars = {b"reply": reply.get("minLength", 0), b"phrase": phrase.get("minLength", 0)}
    return PlanRules(actions=tuple(actions), target_actions=frozenset(targeted),
                     max_chars={k: v for k, v in max_chars.items() if v is not None}, min_chars=min_chars)


def unenforced_string_bounds(caps: Capabilities | None = None) -> list[str]:
    """String fields with a length bound that neither the grammar nor the tracker enforces
    (targets are bounded by being one of the phrases). Left to `parse_plan`; tests expect none."""
    schema = plan_json_schema(caps)
    out: list[str] = []
    for name, d in schema.get("$defs", {}).items():
        for key, prop in d.get("properties", {}).items():
            if prop.get("type") == "string" and "maxLength" in prop and key != "target":
                out.append(f"{name}.{key}")
    for key, prop in schema["properties"].items():
        if prop.get("type") == "string" and "maxLength" in prop and key != "reply":
            out.append(key)
    return out


def _utf8_chars(data: bytes) -> int:
    """Code points in `data` (continuation bytes do not count), as pydantic counts lengths."""
    return sum(1 for b in data if b & 0xC0 != 0x80)


class TokenVocab:
    """The bytes each token id stands for, and lookups the tracker's masking needs."""

    def __init__(self, info: xgr.TokenizerInfo) -> None:
        specials = set(info.special_token_ids) | set(info.stop_token_ids)
        decoded = info.decoded_vocab
        self.size = info.vocab_size
        self.token_bytes: list[bytes] = [b""] * self.size
        self.by_text: dict[bytes, list[int]] = {}
        self.by_quote_prefix: dict[bytes, list[int]] = {}  # text before the first quote -> ids
        # Characters a token adds to the string being written (up to a closing quote, if any).
        self.chars_in_string = np.zeros(self.size, dtype=np.int32)
        quote_ids = []
        for tid in range(min(len(decoded), self.size)):
            if tid in specials:
                continue
            data = bytes(decoded[tid])
            if not data:
                continue
            self.token_bytes[tid] = data
            self.by_text.setdefault(data, []).append(tid)
            q = data.find(b'"')
            if q >= 0:
                quote_ids.append(tid)
                self.by_quote_prefix.setdefault(data[:q], []).append(tid)
            self.chars_in_string[tid] = _utf8_chars(data if q < 0 else data[:q])
        self.quote_ids = np.asarray(quote_ids, dtype=np.int64)
        self.max_chars_in_string = int(self.chars_in_string.max(initial=0))

    def completions(self, rest: bytes) -> set[int]:
        """Ids of tokens that write `rest` + closing quote, or a prefix of it, or go beyond the quote."""
        target = rest + b'"'
        ids: set[int] = set()
        for k in range(1, len(target) + 1):
            ids.update(self.by_text.get(target[:k], ()))
        ids.update(self.by_quote_prefix.get(rest, ()))
        return ids


class PlanGrammar:
    """The compiled plan grammar for one tokenizer and one robot (compile once, decode many)."""

    def __init__(self, tokenizer: Any, caps: Capabilities, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.caps = caps
        self.schema = grammar_schema(caps)
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        compiler = xgr.GrammarCompiler(self.info, max_threads=max(1, min(8, torch.get_num_threads())))
        self.compiled = compiler.compile_json_schema(
            json.dumps(self.schema), any_whitespace=False, separators=SEPARATORS, strict_mode=True
        )
        self.vocab = TokenVocab(self.info)
        self.rules = plan_rules(caps)
        self.stop_token_ids = list(self.info.stop_token_ids)
        # Tokens a rule rejects at a quote depend only on the tracker's state: cache them.
        self._reject_cache: OrderedDict[tuple, tuple[int, ...]] = OrderedDict()

    def constraint(self, allowed_phrases: Sequence[str] | None = None) -> PlanConstraint:
        """A fresh decoding state; `allowed_phrases` restricts every phrase to that list."""
        return PlanConstraint(self, allowed_phrases)


def _words(bitmask: torch.Tensor) -> np.ndarray:
    return bitmask.numpy().view(np.uint32)[0]


def _allowed(words: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ((words[ids >> 5] >> (ids & 31).astype(np.uint32)) & 1).astype(bool)


class PlanConstraint:
    """One decoding's grammar state: fill the next-token bitmask, accept the chosen token."""

    def __init__(self, grammar: PlanGrammar, allowed_phrases: Sequence[str] | None = None) -> None:
        self.grammar = grammar
        self.matcher = xgr.GrammarMatcher(grammar.compiled)
        allowed = None if allowed_phrases is None else tuple(p.encode() for p in allowed_phrases)
        self.tracker = PlanTracker(grammar.rules, allowed)
        self.bitmask = xgr.allocate_token_bitmask(1, grammar.vocab.size)
        self.dead_end = False

    def fill_next_token_bitmask(self) -> torch.Tensor:
        """The CPU bitmask (int32, 1 x ceil(V/32)) of tokens that keep the plan valid."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        words = _words(self.bitmask)
        mode = self.tracker.mode()
        vocab = self.grammar.vocab
        if self.tracker.choosing():
            # Only continuations of the allowed values: look them up instead of testing every token.
            rest_ids: set[int] = set()
            buf = bytes(self.tracker.buf)
            for opt in self.tracker.options():
                if opt.startswith(buf):
                    rest_ids |= vocab.completions(opt[len(buf):])
            ids = np.fromiter(rest_ids, dtype=np.int64, count=len(rest_ids))
            keep = ids[_allowed(words, ids)] if len(ids) else ids
            keep = [int(t) for t in keep if self.tracker.accepts(vocab.token_bytes[t])]
            words[:] = 0
            for t in keep:
                words[t >> 5] |= np.uint32(1 << (t & 31))
        else:
            for t in self._rejected(mode, words):
                words[t >> 5] &= np.uint32(~(1 << (t & 31)) & 0xFFFFFFFF)
            limit = self.tracker.chars_left()
            if limit is not None and limit < vocab.max_chars_in_string:
                # Near a string's length limit: drop every token that would overrun it (vectorised).
                bits = np.unpackbits(words.view(np.uint8), bitorder="little")
                bits[: vocab.size][vocab.chars_in_string > limit] = 0
                words[:] = np.packbits(bits, bitorder="little").view(np.uint32)
        self.dead_end = not words.any()
        return self.bitmask

    def _rejected(self, mode: str, words: np.ndarray) -> tuple[int, ...]:
        """Allowed tokens that a rule refuses; only tokens with a quote can close or open a checked
        string, so only those are tested (plus, in 'declined', every allowed token)."""
        tr = self.tracker
        vocab = self.grammar.vocab
        if mode == "declined":
            ids = np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")[: vocab.size])
            return tuple(int(t) for t in ids if vocab.token_bytes[t] and not tr.accepts(vocab.token_bytes[t]))
        key = tr.signature()
        cache = self.grammar._reject_cache
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
        ids = vocab.quote_ids
        full = tr.rules.max_chars.get(b"phrase")
        if mode == "phrase" and full is not None:
            # ... or fill a phrase to its full length as a duplicate of an earlier one
            buf = bytes(tr.buf)
            extra: set[int] = set()
            for p in tr.phrases:
                if len(p) >= full and p.startswith(buf) and len(p) > len(buf):
                    extra.update(vocab.by_text.get(p[len(buf):], ()))
            if extra:
                ids = np.union1d(ids, np.fromiter(extra, dtype=np.int64, count=len(extra)))
        ids = ids[_allowed(words, ids)] if len(ids) else ids
        rejected = tuple(int(t) for t in ids if vocab.token_bytes[t] and not tr.accepts(vocab.token_bytes[t]))
        cache[key] = rejected
        if len(cache) > 4096:
            cache.popitem(last=False)
        return rejected

    def accept_token(self, token_id: int) -> bool:
        """Advance on the chosen token; False if the grammar or a tracked rule refuses it."""
        if not self.matcher.accept_token(token_id):
            return False
        if token_id in self.grammar.stop_token_ids:
            return True
        return self.tracker.feed(self.grammar.vocab.token_bytes[token_id])

    def is_completed(self) -> bool:
        return self.matcher.is_completed()
