"""A small seeded English sentence generator (a toy grammar, not a fixed list).

Sentences are built from templates (statements, questions, requests, reports
with numbers, compound sentences ...) filled from a small lexicon, so the
corpus has many distinct sentences of varied length (about 4 to 16 words,
i.e. roughly 1.5 to 5 seconds of synthetic speech at 145-205 words per
minute). :func:`make_sentence` draws one sentence from a
:class:`numpy.random.Generator`; :class:`SentenceGenerator` wraps a seed.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np

__all__ = ["SentenceGenerator", "make_sentence", "TEMPLATES"]

# --- lexicon ---------------------------------------------------------------------------------
NAMES = (
    "Anna", "Peter", "Maria", "John", "Laura", "David", "Sophie", "Michael", "Emma", "Thomas",
    "Clara", "Robert", "Julia", "Daniel", "Nora", "Oliver", "Helen", "Victor", "Alice", "George",
)
# (singular, plural)
NOUNS = (
    ("dog", "dogs"), ("teacher", "teachers"), ("farmer", "farmers"), ("doctor", "doctors"),
    ("child", "children"), ("student", "students"), ("pilot", "pilots"), ("driver", "drivers"),
    ("neighbor", "neighbors"), ("baker", "bakers"), ("cat", "cats"), ("horse", "horses"),
    ("singer", "singers"), ("lawyer", "lawyers"), ("painter", "painters"), ("nurse", "nurses"),
    ("manager", "managers"), ("sailor", "sailors"), ("engineer", "engineers"), ("friend", "friends"),
)
THINGS = (
    ("book", "books"), ("letter", "letters"), ("box", "boxes"), ("car", "cars"),
    ("bottle", "bottles"), ("ticket", "tickets"), ("window", "windows"), ("chair", "chairs"),
    ("lamp", "lamps"), ("map", "maps"), ("basket", "baskets"), ("coat", "coats"),
    ("radio", "radios"), ("camera", "cameras"), ("table", "tables"), ("bicycle", "bicycles"),
    ("garden", "gardens"), ("report", "reports"), ("picture", "pictures"), ("key", "keys"),
    ("apple", "apples"), ("river", "rivers"), ("bridge", "bridges"), ("clock", "clocks"),
)
ADJECTIVES = (
    "old", "new", "small", "large", "red", "green", "blue", "heavy", "quiet", "bright",
    "famous", "broken", "empty", "yellow", "strange", "careful", "happy", "tired", "young",
    "wooden", "golden", "dark", "warm", "cold", "simple", "expensive", "narrow", "lucky",
)
# (base, past, past participle, ing)
VERBS = (
    ("carry", "carried", "carried", "carrying"), ("find", "found", "found", "finding"),
    ("paint", "painted", "painted", "painting"), ("open", "opened", "opened", "opening"),
    ("move", "moved", "moved", "moving"), ("clean", "cleaned", "cleaned", "cleaning"),
    ("sell", "sold", "sold", "selling"), ("buy", "bought", "bought", "buying"),
    ("fix", "fixed", "fixed", "fixing"), ("watch", "watched", "watched", "watching"),
    ("bring", "brought", "brought", "bringing"), ("hide", "hid", "hidden", "hiding"),
    ("read", "read", "read", "reading"), ("build", "built", "built", "building"),
    ("check", "checked", "checked", "checking"), ("send", "sent", "sent", "sending"),
    ("lose", "lost", "lost", "losing"), ("borrow", "borrowed", "borrowed", "borrowing"),
    ("describe", "described", "described", "describing"), ("follow", "followed", "followed", "following"),
)
INTRANSITIVE = (
    ("arrive", "arrived", "arriving"), ("wait", "waited", "waiting"), ("sleep", "slept", "sleeping"),
    ("laugh", "laughed", "laughing"), ("travel", "traveled", "traveling"), ("sing", "sang", "singing"),
    ("work", "worked", "working"), ("walk", "walked", "walking"), ("listen", "listened", "listening"),
    ("rest", "rested", "resting"), ("return", "returned", "returning"), ("leave", "left", "leaving"),
)
PLACES = (
    "the station", "the market", "the old harbor", "the library", "the village", "the museum",
    "the kitchen", "the hospital", "the north gate", "the city hall", "the garden", "the bakery",
    "the airport", "the school", "the river bank", "the mountain road", "the office", "the farm",
    "London", "Boston", "Paris", "Madrid", "Chicago", "Berlin", "Toronto", "Dublin",
)
PREPOSITIONS = ("near", "behind", "inside", "outside", "across from", "next to", "at", "beyond")
TIMES = (
    "yesterday", "this morning", "last night", "on Monday", "on Friday evening", "before noon",
    "after lunch", "last winter", "at dawn", "every Sunday", "in the afternoon", "last week",
    "at seven o'clock", "two days ago", "early today", "in the spring",
)
ADVERBS = ("quickly", "slowly", "carefully", "quietly", "happily", "suddenly", "finally", "again")
CONNECTIVES = ("and", "but", "because", "while", "so", "although", "after", "before")
NUMBERS_SMALL = (
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "twenty", "forty", "a hundred",
)
WH_PLACE = ("Where", "Why", "When", "How")


# --- building blocks -------------------------------------------------------------------------
class _Ctx:
    """Random choices on top of a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, seq: Sequence):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def number(self) -> str:
        if self.chance(0.5):
            return self.pick(NUMBERS_SMALL)
        return str(int(self.rng.integers(13, 1000)))  # eSpeak reads digits aloud

    def det(self, word: str) -> str:
        if self.chance(0.6):
            return "the"
        return "an" if word[0] in "aeiou" else "a"

    def np_person(self, allow_name: bool = True) -> List[str]:
        if allow_name and self.chance(0.3):
            return [self.pick(NAMES)]
        noun = self.pick(NOUNS)[0]
        if self.chance(0.45):
            adj = self.pick(ADJECTIVES)
            return [self.det(adj), adj, noun]
        return [self.det(noun), noun]

    def np_thing(self) -> List[str]:
        noun = self.pick(THINGS)[0]
        if self.chance(0.5):
            adj = self.pick(ADJECTIVES)
            return [self.det(adj), adj, noun]
        return [self.det(noun), noun]

    def np_plural(self) -> List[str]:
        words = [self.number()]
        if self.chance(0.5):
            words.append(self.pick(ADJECTIVES))
        words.append(self.pick(THINGS)[1])
        return words

    def pp_place(self) -> List[str]:
        return [self.pick(PREPOSITIONS)] + self.pick(PLACES).split()

    def optional_tail(self, p_place: float = 0.5, p_time: float = 0.35) -> List[str]:
        out: List[str] = []
        if self.chance(p_place):
            out += self.pp_place()
        if self.chance(p_time):
            out += self.pick(TIMES).split()
        return out

    def clause(self, short: bool = False) -> List[str]:
        """A simple past-tense statement (``short``: rarely with place/time phrases)."""
        scale = 0.4 if short else 1.0
        if self.chance(0.3):
            verb = self.pick(INTRANSITIVE)
            words = self.np_person() + [verb[1]]
            if self.chance(0.4):
                words.append(self.pick(ADVERBS))
            return words + self.optional_tail(0.6 * scale, 0.3 * scale)
        verb = self.pick(VERBS)
        words = self.np_person() + [verb[1]]
        words += self.np_plural() if self.chance(0.25) else self.np_thing()
        return words + self.optional_tail(0.45 * scale, 0.3 * scale)


# --- templates -------------------------------------------------------------------------------
def _statement(c: _Ctx) -> str:
    return _finish(c.clause(), ".")


def _time_first(c: _Ctx) -> str:
    time = c.pick(TIMES).split()
    return _finish(time + [","] + c.clause(), ".")


def _compound(c: _Ctx) -> str:
    first = c.clause(short=True)
    second = c.clause(short=True)
    return _finish(first + [",", c.pick(CONNECTIVES)] + second, ".")


def _yes_no_question(c: _Ctx) -> str:
    verb = c.pick(VERBS)
    aux = c.pick(("Did", "Will", "Can", "Should", "Would"))
    words = [aux] + c.np_person() + [verb[0]] + c.np_thing()
    if c.chance(0.5):
        words += c.pp_place()
    return _finish(words, "?")


def _wh_question(c: _Ctx) -> str:
    if c.chance(0.5):
        verb = c.pick(INTRANSITIVE)
        words = [c.pick(WH_PLACE), "did"] + c.np_person() + [verb[0]]
        if c.chance(0.5):
            words += c.pick(TIMES).split()
        return _finish(words, "?")
    verb = c.pick(VERBS)
    thing = c.pick(THINGS)[1]
    words = ["How", "many", thing, "did"] + c.np_person() + [verb[0]]
    if c.chance(0.6):
        words += c.pp_place()
    return _finish(words, "?")


def _request(c: _Ctx) -> str:
    verb = c.pick(VERBS)
    words = (["Please"] if c.chance(0.6) else []) + [verb[0]] + c.np_thing()
    if c.chance(0.6):
        words += c.pp_place()
    if c.chance(0.4):
        words += ["before", c.pick(("noon", "dinner", "Monday", "the meeting", "tomorrow"))]
    return _finish(words, "." if c.chance(0.8) else "!")


def _report(c: _Ctx) -> str:
    words = c.np_plural() + ["were", c.pick(VERBS)[2]] + c.pp_place()
    if c.chance(0.5):
        words += c.pick(TIMES).split()
    return _finish(words, ".")


def _progressive(c: _Ctx) -> str:
    if c.chance(0.5):
        verb = c.pick(VERBS)
        words = c.np_person() + [c.pick(("is", "was")), verb[3]] + c.np_thing()
    else:
        verb = c.pick(INTRANSITIVE)
        words = c.np_person() + [c.pick(("is", "was")), verb[2]]
    return _finish(words + c.optional_tail(0.5, 0.3), ".")


def _speech(c: _Ctx) -> str:
    speaker = c.np_person()
    said = c.pick(("said", "thinks", "believes", "told us", "wrote"))
    inner = c.clause(short=True)
    return _finish(speaker + [said, "that"] + inner, ".")


def _short(c: _Ctx) -> str:
    adj = c.pick(ADJECTIVES)
    noun = c.pick(THINGS)[0]
    options = (
        ["The", noun, "is", adj],
        ["What", "a", adj, noun] if adj[0] not in "aeiou" else ["What", "an", adj, noun],
        ["Thank", "you", "very", "much", c.pick(NAMES)],
        [c.pick(NAMES), "is", "not", "here", "yet"],
        ["It", "is", c.pick(("late", "early", "cold", "warm", "quiet")), c.pick(TIMES)],
    )
    words = options[int(c.rng.integers(len(options)))]
    return _finish(list(words), "!" if words[0] == "What" else ".")


#: (template, weight)
TEMPLATES: Sequence = (
    (_statement, 4.0),
    (_time_first, 1.5),
    (_compound, 1.5),
    (_yes_no_question, 1.5),
    (_wh_question, 1.5),
    (_request, 1.0),
    (_report, 1.0),
    (_progressive, 1.0),
    (_speech, 1.0),
    (_short, 0.7),
)


def _finish(words: List[str], end: str) -> str:
    text = " ".join(words).replace(" ,", ",")
    text = text[0].upper() + text[1:]
    return text.rstrip(",") + end


def make_sentence(rng: np.random.Generator, max_words: Optional[int] = 16) -> str:
    """Draw one sentence from ``rng``. Sentences longer than ``max_words`` are redrawn."""
    c = _Ctx(rng)
    funcs: List[Callable[[_Ctx], str]] = [t for t, _ in TEMPLATES]
    weights = np.array([w for _, w in TEMPLATES], dtype=float)
    weights /= weights.sum()
    while True:
        idx = int(rng.choice(len(funcs), p=weights))
        text = funcs[idx](c)
        if max_words is None or len(text.split()) <= max_words:
            return text


class SentenceGenerator:
    """Seeded, endless stream of sentences: ``SentenceGenerator(0).sample(5)``."""

    def __init__(self, seed: int = 0, max_words: Optional[int] = 16):
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E7]))
        self.max_words = max_words

    def __call__(self) -> str:
        return make_sentence(self.rng, self.max_words)

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self()

    def sample(self, n: int) -> List[str]:
        return [self() for _ in range(n)]
