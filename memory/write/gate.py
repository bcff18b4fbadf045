"""The write gate: which exchanges become memories.

A sigmoid of lexical features (:func:`importance`), after Adaptive Neural Memory's importance
gate (a learned MLP there; fixed, explainable weights here). Greetings and acknowledgements
stay in the raw archive only; personal facts, preferences, decisions and corrections become
memories.
"""

from __future__ import annotations

import math
import re

GREETING = re.compile(
    r"^\W*(?:(?:hi|hello|hey|hiya|yo|ok|okay|k|thanks|thank you|thx|ty|cheers|bye|goodbye|"
    r"good (?:morning|night|evening|afternoon)|cool|nice|great|lol|haha|yes|yeah|yep|no|nope|"
    r"sure|alright|got it|sounds good|you too|welcome|np|see you)\W*)+$",
    re.IGNORECASE,
)
"""A turn made only of greetings and acknowledgements."""
PERSONAL = re.compile(
    r"\b(?:I|I'm|I've|I'll|I'd|my|mine|me|we|our|ours|myself)\b"
    r"|\b(?:actually|remember|correction|instead|prefer|favou?rite|allergic|decided)\b",
    re.IGNORECASE,
)
"""First-person facts, preferences, decisions and corrections."""
STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "why",
        "when",
        "where",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "you",
        "your",
        "yours",
        "i",
        "me",
        "my",
        "we",
        "our",
        "they",
        "them",
        "their",
        "he",
        "she",
        "him",
        "her",
        "his",
        "hers",
        "so",
        "very",
        "just",
        "also",
        "too",
        "then",
        "than",
        "ok",
        "okay",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "please",
        "sure",
        "well",
        "good",
        "great",
        "nice",
        "really",
    ]
)
WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}|\d+")


def importance(user: str, reply: str = "") -> float:
    """Sigmoid importance of an exchange in (0, 1):
    ``sigmoid(-1.5 + 0.5 * min(content words, 8) + 1.5 * personal + 0.4 * min(names and
    numbers, 3) - 5 * greeting)``, content words counted over both turns, ``personal`` and
    ``greeting`` on the user's turn (:data:`PERSONAL`, :data:`GREETING`). Round weights, set
    so that a greeting or "ok thanks" lands near 0, a personal statement above 0.5, and any
    turn with three content words at 0.5 or more.

    >>> importance("hi") < 0.05, importance("ok thanks", "You're welcome!") < 0.05
    (True, True)
    >>> importance("I prefer green tea") > 0.5, importance("Ann: I adopted a greyhound") > 0.5
    (True, True)
    """
    words = WORD.findall(f"{user} {reply}")
    content = sum(1 for w in words if w.lower() not in STOP)
    names = sum(1 for w in WORD.findall(user)[1:] if w[0].isupper() or w.isdigit())
    z = -1.5 + 0.5 * min(content, 8) + 0.4 * min(names, 3)
    if PERSONAL.search(user):
        z += 1.5
    if GREETING.match(user):
        z -= 5.0
    return 1.0 / (1.0 + math.exp(-z))
