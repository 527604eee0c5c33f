"""Conversation memory: the last user commands and the plans that answered them.

Follow-ups such as "now the blue one" only make sense with the previous turn in the prompt; the
planner puts the last N turns (user text, assistant plan JSON) before the new command.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str  # the plan JSON the model answered with

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.user}, {"role": "assistant", "content": self.assistant}]


class Dialogue:
    """A bounded, thread-safe list of turns (the node's worker and callbacks share it)."""

    def __init__(self, max_turns: int = 8) -> None:
        self._turns: deque[Turn] = deque(maxlen=max(1, max_turns))
        self._lock = threading.Lock()

    def add(self, user: str, assistant: str) -> None:
        with self._lock:
            self._turns.append(Turn(user, assistant))

    def last(self, n: int) -> list[Turn]:
        with self._lock:
            return list(self._turns)[-n:] if n > 0 else []

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._turns)
