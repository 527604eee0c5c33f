"""Untrusted command text: cleaning, truncation, and the `stop` words answered without the model.

Text from the command topic may be anything (control characters, megabytes, other languages,
instructions aimed at the model). It is only ever *data* for the prompt: cleaned here, planned
under the grammar, validated. `stop` must work even while the model is busy, so the plain stop
words are recognised here and never wait for a plan.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass

from lookout.agent.capabilities import Capabilities
from lookout.agent.plan import PlanBase, make_plan

_STOP_WORDS = ("stop", "halt", "freeze", "abort", "cancel", "stay", "emergency stop", "stopp", "arrête", "arrete",
               "para", "alto", "basta", "止まれ", "停止", "停")
# Words around a stop word that leave it a plain stop ("ok just stop", "no, stop right there"). Anything
# else (a place, a target, a negation such as "don't") sends the text to the planner as usual.
_LEAD = r"(?:please|now|ok|okay|hey|oh|no|just|lookout|robot|the robot|stop)"
_TRAIL = (r"(?:please|now|right now|it|that|moving|everything|the robot|robot|immediately|at once|stop|"
          r"right there|there|right here|here|already|for now)")
_STOP_RE = re.compile(
    rf"^(?:{_LEAD}\s+)*(?:{'|'.join(map(re.escape, _STOP_WORDS))})(?:\s+{_TRAIL})*$"
)


@dataclass(frozen=True)
class CleanCommand:
    text: str
    truncated: bool
    original_chars: int


def fold_case(text: str) -> str:
    """SHOUTED or Title Case text in sentence case ("GO TO THE RED BALL" -> "Go to the red ball").

    Such casing says nothing about the robot's task (plans name objects in lower case), and a small
    model sees those words as different tokens, so the planner reads every command in one casing.
    Text with any other mix of cases is left as it is.
    """
    words = [w.lstrip(string.punctuation) for w in text.split() if any(c.isalpha() for c in w)]
    if len(words) < 2:
        return text
    shouted = all(w == w.upper() for w in words)
    titled = all(w[0].isupper() for w in words if w[:1].isalpha())  # not "0.5m"
    if not (shouted or titled):
        return text
    lower = text.lower()
    first = next(i for i, c in enumerate(lower) if c.isalpha())
    return lower[:first] + lower[first].upper() + lower[first + 1:]


def sanitize_command(text: str, max_chars: int) -> CleanCommand:
    """NFKC-normalise, turn control/format characters into spaces, collapse spaces, fold shouting, truncate."""
    raw = text if isinstance(text, str) else str(text)
    norm = unicodedata.normalize("NFKC", raw[: max_chars * 4])  # bound the work on huge inputs
    chars = [" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") else c for c in norm]
    clean = fold_case(re.sub(r"\s+", " ", "".join(chars)).strip())
    truncated = len(clean) > max_chars or len(raw) > max_chars * 4
    if len(clean) > max_chars:
        clean = clean[:max_chars].rstrip()
    return CleanCommand(text=clean, truncated=truncated, original_chars=len(raw))


def is_stop_command(text: str) -> bool:
    """True for plain stop requests ("stop", "Stop!", "please stop now", "halt"), not "stop at the door"."""
    words = re.sub(r"[^\w\s]", " ", text.casefold())
    words = re.sub(r"\s+", " ", words).strip()
    return bool(words) and _STOP_RE.match(words) is not None


STOP_REPLY = "Stopping."


def stop_plan(caps: Capabilities) -> PlanBase:
    """The plan a stop command gets at once, without the model (Agent.submit; the agent eval scores it too)."""
    return make_plan(caps, reply=STOP_REPLY, phrases=[], steps=[{"action": "stop"}])
