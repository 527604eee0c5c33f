"""The object vocabulary of the robot-command dataset, and how numbers and units are spoken.

Targets are "colour object" pairs (or a bare object). The phrase in a plan is the object as the
user named it, lower-cased, without article (the detector is open-vocabulary, so "sphere" stays
"sphere"); only indefinite pronouns ("someone") become a noun ("person"). Which colour-object
pairs exist only in the test split is decided here from the seed; the pairs the simulator
renders are never held out, so the demo's objects are always well covered in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lookout.sim.config import COLORS as _SIM_COLORS
from lookout.sim.config import SHAPES as _SIM_SHAPES

# What the MuJoCo simulator renders (coloured primitives): always in train, sampled more often.
SIM_COLOURS: tuple[str, ...] = tuple(_SIM_COLORS)
SIM_SHAPES: tuple[str, ...] = tuple(_SIM_SHAPES)

COLOURS: tuple[str, ...] = tuple(dict.fromkeys((*SIM_COLOURS, "pink", "brown", "grey", "gray", "silver", "gold")))

# Nouns that take a colour. Synonyms are kept as said (the detector resolves them); the groups
# are listed so the dataset card and the detector's evaluation can name them.
COLOURED_NOUNS: tuple[str, ...] = tuple(dict.fromkeys((
    *SIM_SHAPES,
    "capsule", "cube", "block", "sphere", "cup", "mug", "bottle", "can", "chair", "bag", "backpack", "book",
    "bucket", "crate", "bin", "trash can", "toy car", "umbrella", "hat", "pillow", "towel", "balloon",
    "basket", "lamp", "shoe", "helmet", "notebook", "teddy bear", "traffic cone", "jacket", "box lid",
)))
# Nouns usually named without a colour.
PLAIN_NOUNS: tuple[str, ...] = ("person", "door", "table", "dog", "cat", "sofa", "plant", "laptop", "charging dock")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "ball": ("sphere",),
    "box": ("crate",),
    "cube": ("block",),
    "cup": ("mug",),
    "bin": ("trash can",),
    "cone": ("traffic cone",),
    "grey": ("gray",),
}
# Places the robot cannot go to by name (it goes to objects it can see); commands naming one are declined.
PLACES: tuple[str, ...] = ("kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway", "garden",
                           "dining room", "basement", "corridor", "lab")
# Words people use for a person; the plan names the detector class "person".
PERSON_WORDS: tuple[str, ...] = ("someone", "somebody", "a person", "a human")


@dataclass(frozen=True, order=True)
class Target:
    """An object the user refers to: an optional colour and a noun, both as said."""

    noun: str
    colour: str | None = None

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.noun}" if self.colour else self.noun

    @property
    def combo(self) -> tuple[str, str] | None:
        return (self.colour, self.noun) if self.colour else None

    def with_colour(self, colour: str) -> Target:
        return Target(self.noun, colour)


def sim_combos() -> list[tuple[str, str]]:
    return [(c, n) for c in SIM_COLOURS for n in SIM_SHAPES]


def all_combos() -> list[tuple[str, str]]:
    return [(c, n) for c in COLOURS for n in COLOURED_NOUNS]


def choose_heldout_combos(seed: int, fraction: float = 0.12) -> list[tuple[str, str]]:
    """Colour-object pairs that appear only in the test split (never a simulator pair).

    Each colour and each noun keeps most of its partners in train, so a held-out pair is a new
    combination of known words: what the test measures is composition, not new vocabulary.
    """
    rng = random.Random(f"{seed}-heldout-combos")
    sim = set(sim_combos())
    candidates = [c for c in all_combos() if c not in sim]
    heldout = sorted(rng.sample(candidates, round(fraction * len(candidates))))
    # Guarantee every word still has training partners (true by a wide margin at 12%, checked anyway).
    held = set(heldout)
    for colour in COLOURS:
        assert any((colour, n) not in held for n in COLOURED_NOUNS)
    for noun in COLOURED_NOUNS:
        assert any((c, noun) not in held for c in COLOURS)
    return heldout


def article(word: str, definite_ok: bool = True, rng: random.Random | None = None) -> str:
    """'the', 'a' or 'an' before `word` (random when rng is given, else 'the')."""
    indefinite = "an" if word[:1] in "aeiou" else "a"
    if rng is None:
        return "the"
    if not definite_ok:
        return indefinite
    return rng.choices(["the", indefinite, "that", "my", ""], weights=[62, 26, 5, 3, 4])[0]


# ---- numbers -----------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety"}
NUMBER_WORDS: frozenset[str] = frozenset({*_ONES, *_TENS.values(), "hundred"})


def number_words(n: int, rng: random.Random | None = None) -> str:
    """English words for 0 <= n < 1000 ("forty-five" or "forty five", "a hundred and eighty")."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        if ones == 0:
            return _TENS[tens * 10]
        sep = rng.choice(["-", " "]) if rng else "-"
        return f"{_TENS[tens * 10]}{sep}{_ONES[ones]}"
    hundreds, rest = divmod(n, 100)
    head = ("a hundred" if rng and rng.random() < 0.5 else "one hundred") if hundreds == 1 else f"{_ONES[hundreds]} hundred"
    if rest == 0:
        return head
    return f"{head} and {number_words(rest, rng)}"


def fmt_number(x: float) -> str:
    """2.0 -> '2', 0.5 -> '0.5' (how replies and digit renderings write numbers)."""
    return f"{x:g}"


def _fraction_words(x: float) -> str | None:
    whole, frac = divmod(x, 1)
    if frac == 0:
        return number_words(int(whole))
    if frac == 0.5:
        return "half a" if whole == 0 else f"{number_words(int(whole))} and a half"
    return None


def say_distance(meters: float, rng: random.Random) -> str:
    """A spoken distance: '2 meters', 'two metres', '50 cm', 'half a metre', '1.5 m'..."""
    options: list[str] = []
    unit_m = rng.choice(["meters", "metres"]) if meters != 1 else rng.choice(["meter", "metre"])
    digits = fmt_number(meters)
    options += [f"{digits} {unit_m}", f"{digits} m", f"{digits}m"]
    words = _fraction_words(meters)
    if words == "half a":
        options += [f"half a {rng.choice(['meter', 'metre'])}"] * 2
    elif words and meters == int(meters):
        options += [f"{words} {unit_m}"] * 2
        if meters == 1:
            options.append(f"a {rng.choice(['meter', 'metre'])}")
    elif words:  # "one and a half meters"
        options.append(f"{words} {rng.choice(['meters', 'metres'])}")
    cm = round(meters * 100)
    if cm <= 200 and abs(cm - meters * 100) < 1e-9:
        unit_cm = rng.choice(["cm", "centimeters", "centimetres"])
        options += [f"{cm} {unit_cm}", f"{cm}cm"]
        if meters < 1:
            options += [f"{number_words(cm, rng)} {rng.choice(['centimeters', 'centimetres'])}", f"{cm} {unit_cm}"]
    return rng.choice(options)


def say_degrees(deg: int, rng: random.Random) -> str:
    unit = rng.choice(["degrees", "degrees", "deg"]) if deg != 1 else "degree"
    return rng.choice([f"{deg} {unit}", f"{deg} {unit}", f"{number_words(deg, rng)} degrees"])


def say_seconds(sec: float, rng: random.Random) -> str:
    n = int(sec)
    if sec == 1:
        return rng.choice(["1 second", "one second", "a second"])
    if sec == 30 and rng.random() < 0.3:
        return "half a minute"
    if sec == 60 and rng.random() < 0.6:
        return rng.choice(["a minute", "one minute"])
    unit = rng.choice(["seconds", "seconds", "secs", "s"])
    return rng.choice([f"{n} {unit}", f"{number_words(n, rng)} seconds"])


# Values the dataset uses (meters, degrees, seconds); in range for the default capabilities.
MOVE_VALUES: tuple[float, ...] = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
TURN_VALUES: tuple[int, ...] = (10, 15, 20, 30, 45, 60, 90, 120, 135, 150, 180, 270, 360)
WAIT_VALUES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
STOP_DISTANCE_VALUES: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.75, 0.8, 1.0, 1.5, 2.0)
# Out-of-range requests (declined with the limit named).
MOVE_TOO_FAR: tuple[float, ...] = (6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0, 50.0, 100.0)
TURN_TOO_FAR: tuple[int, ...] = (400, 450, 540, 720, 900)
WAIT_TOO_LONG: tuple[float, ...] = (40, 45, 60, 90, 120)
STOP_DISTANCE_BAD: tuple[float, ...] = (0.05, 0.1, 0.2, 2.5, 3.0, 4.0, 5.0)
SPEEDS_TOO_FAST: tuple[float, ...] = (1, 2, 3, 5, 10, 20)
