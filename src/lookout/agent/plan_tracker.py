"""Plan rules the JSON-schema grammar does not enforce, checked byte by byte.

The grammar (xgrammar, from the plan's JSON schema) guarantees the syntax, the key order, the
actions, the number ranges and the string patterns. What it cannot say is how fields relate: every
step's target must be one of the plan's phrases, phrases are unique, a declined plan has no steps,
and without phrases no step may need a target. String lengths are counted here too (cheaper than
bounded repetitions in the grammar). `PlanTracker` follows the compact JSON the model writes and
answers "does this continuation keep the plan valid?", so the decoder can mask tokens that would
break these rules. Together the two make every finished output pass `parse_plan`.

It assumes the grammar's output shape (compact JSON, keys in the contract's order) and relies on
the grammar for everything else: it is a filter on top of the grammar, never a parser on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPEN_OBJ, _CLOSE_OBJ, _OPEN_ARR, _CLOSE_ARR = 0x7B, 0x7D, 0x5B, 0x5D
_COLON, _COMMA = 0x3A, 0x2C
_TRUE_START = ord("t")


@dataclass(frozen=True)
class PlanRules:
    """What the tracker enforces, derived from the plan schema of one robot."""

    actions: tuple[bytes, ...]  # every action name the schema allows
    target_actions: frozenset[bytes]  # actions whose step has a `target` field
    max_chars: dict[bytes, int] = field(default_factory=dict)  # b"reply" / b"phrase" -> length limit
    min_chars: dict[bytes, int] = field(default_factory=dict)


class PlanTracker:
    """Incremental checker of the cross-field rules over the bytes of a plan being decoded."""

    __slots__ = ("rules", "stack", "in_str", "is_key", "esc", "buf", "chars", "key", "phrases",
                 "phrases_done", "steps", "after_colon", "failed", "allowed_phrases")

    def __init__(self, rules: PlanRules, allowed_phrases: tuple[bytes, ...] | None = None) -> None:
        self.rules = rules
        # When set, every phrase must be one of these (the planner's grounded re-decode).
        self.allowed_phrases = allowed_phrases
        # Each frame: [kind, key] with kind b"o" (object) or b"a" (array); key is the object's
        # current key, or for an array the key it is the value of.
        self.stack: list[list] = []
        self.in_str = False
        self.is_key = False
        self.esc = False
        self.buf = bytearray()
        self.chars = 0  # code points in buf
        self.key: bytes | None = None  # last key read in the current object
        self.phrases: list[bytes] = []
        self.phrases_done = False
        self.steps = 0
        self.after_colon = False
        self.failed = False

    def clone(self) -> PlanTracker:
        other = PlanTracker.__new__(PlanTracker)
        other.rules = self.rules
        other.allowed_phrases = self.allowed_phrases
        other.stack = [list(f) for f in self.stack]
        other.in_str, other.is_key, other.esc = self.in_str, self.is_key, self.esc
        other.buf = bytearray(self.buf)
        other.chars = self.chars
        other.key = self.key
        other.phrases = list(self.phrases)
        other.phrases_done, other.steps = self.phrases_done, self.steps
        other.after_colon, other.failed = self.after_colon, self.failed
        return other

    # --- where are we -------------------------------------------------------------------
    def _value_context(self) -> bytes | None:
        """Name of the value being read: b"reply", b"phrase", b"target", b"action", or None (free)."""
        if not self.stack:
            return None
        kind, key = self.stack[-1]
        depth = len(self.stack)
        if kind == b"o" and depth == 1 and key == b"reply":
            return b"reply"
        if kind == b"a" and key == b"phrases" and depth == 2:
            return b"phrase"
        if kind == b"o" and depth == 3 and self.stack[1] == [b"a", b"steps"]:
            if key == b"target":
                return b"target"
            if key == b"action":
                return b"action"
        return None

    def mode(self) -> str:
        """'reply', 'phrase', 'target' or 'action' inside those strings; 'declined' before that
        value; 'free' inside other strings; 'struct' elsewhere."""
        if self.in_str:
            if self.is_key:
                return "struct"
            ctx = self._value_context()
            return ctx.decode() if ctx else "free"
        if self.after_colon and len(self.stack) == 1 and self.stack[0][1] == b"declined":
            return "declined"
        return "struct"

    def chars_left(self) -> int | None:
        """How many more characters the string being written may take (None: no limit here)."""
        if not self.in_str or self.is_key:
            return None
        ctx = self._value_context()
        limit = self.rules.max_chars.get(ctx) if ctx else None
        return None if limit is None else limit - self.chars

    def signature(self) -> tuple:
        """Everything the rules look at, hashable (for caching masks per state)."""
        return (tuple(tuple(f) for f in self.stack), self.in_str, self.is_key, self.esc, bytes(self.buf),
                tuple(self.phrases), self.steps, self.after_colon, self.allowed_phrases)

    def _chosen(self, ctx: bytes | None) -> bool:
        """Values of this kind must be one of `options()`: targets, actions, and phrases when restricted."""
        return ctx in (b"target", b"action") or (ctx == b"phrase" and self.allowed_phrases is not None)

    def choosing(self) -> bool:
        """Inside a string whose value must be one of `options()`."""
        return self.in_str and not self.is_key and self._chosen(self._value_context())

    def options(self) -> list[bytes]:
        """In 'target' or 'action' mode (or 'phrase' when restricted), the complete values still allowed."""
        ctx = self._value_context()
        if ctx == b"phrase" and self.allowed_phrases is not None:
            return [p for p in self.allowed_phrases if p not in self.phrases]
        if ctx == b"target":
            return list(self.phrases)
        if ctx == b"action":
            if self.phrases:
                return list(self.rules.actions)
            return [a for a in self.rules.actions if a not in self.rules.target_actions]
        return []

    # --- feeding ------------------------------------------------------------------------
    def feed(self, data: bytes) -> bool:
        """Advance over `data`; False (and the tracker is spoiled) if a rule would break."""
        for b in data:
            if not self._feed_byte(b):
                self.failed = True
                return False
        return True

    def accepts(self, data: bytes) -> bool:
        """Would `data` keep the plan valid? (does not change this tracker)"""
        return self.clone().feed(data)

    def _feed_byte(self, b: int) -> bool:
        if self.failed:
            return False
        if self.in_str:
            return self._string_byte(b)
        if b == _QUOTE:
            self.in_str, self.esc = True, False
            self.buf.clear()
            self.chars = 0
            top = self.stack[-1] if self.stack else None
            self.is_key = top is not None and top[0] == b"o" and not self.after_colon
            self.after_colon = False
            return self._check_prefix()
        if (self.after_colon and len(self.stack) == 1 and self.stack[0][1] == b"declined"
                and b == _TRUE_START and self.steps > 0):
            return False  # a plan with steps cannot be declined
        if b == _OPEN_OBJ:
            if len(self.stack) == 2 and self.stack[-1] == [b"a", b"steps"]:
                self.steps += 1
            self.stack.append([b"o", None])
        elif b == _OPEN_ARR:
            key = self.stack[-1][1] if self.stack else None
            self.stack.append([b"a", key])
        elif b in (_CLOSE_OBJ, _CLOSE_ARR) and self.stack:
            frame = self.stack.pop()
            if frame == [b"a", b"phrases"] and len(self.stack) == 1:
                self.phrases_done = True
        self.after_colon = b == _COLON
        return True

    def _string_byte(self, b: int) -> bool:
        if b != _QUOTE or self.esc:
            self.esc = not self.esc and b == _BACKSLASH
            self.buf.append(b)
            if self.is_key:
                return True
            if b & 0xC0 != 0x80:
                self.chars += 1
            ctx = self._value_context()
            limit = self.rules.max_chars.get(ctx) if ctx else None
            if limit is not None and self.chars > limit:
                return False
            if ctx == b"phrase" and limit is not None and self.chars >= limit and bytes(self.buf) in self.phrases:
                return False  # full length and a duplicate: no valid way to finish this phrase
            return self._check_prefix()
        # the string ends
        self.in_str = False
        text = bytes(self.buf)
        if self.is_key:
            self.stack[-1][1] = text
            return True
        ctx = self._value_context()
        if ctx is not None and self.chars < self.rules.min_chars.get(ctx, 0):
            return False
        if ctx == b"phrase":
            if text in self.phrases:
                return False  # phrases are unique
            if self.allowed_phrases is not None and text not in self.allowed_phrases:
                return False
            self.phrases.append(text)
        elif ctx in (b"target", b"action") and text not in self.options():
            return False
        return True

    def _check_prefix(self) -> bool:
        if self.is_key:
            return True
        ctx = self._value_context()
        if not self._chosen(ctx):
            return True
        buf = bytes(self.buf)
        return any(opt.startswith(buf) for opt in self.options())
