"""Whose words a memory is: the user's own statement, or an assistant's earlier answer.

An exchange memory stores the user's turn and the reply (``User: ...\\nAssistant: ...``). When
the user only asked ("What is the capital of Australia?", "Recommend a name for my cat"), what
the memory knows comes from the assistant, and a small model's answer may be invented; when the
user said something ("My cat is called Miso"), the memory holds the user's own words. Recall
ranks the second kind above the first when both match (``Weights.assistant_voiced``), and the
renderer marks the reply as an earlier answer (``render.render_body``), so the model can tell a
user's statement from a reply.

The test is lexical (no model call on the recall path): a turn states something when one of
its sentences of at least :data:`MIN_WORDS` words is neither a question (``?``) nor opened by a
question word, an auxiliary verb or a request verb (:data:`ASKING`). It errs towards "stated"
for unusual phrasings ("I wonder what the capital is"), which keeps the first release's ranking.
"""

from __future__ import annotations

import re

from memory.record import split_exchange

_ASKING = """what who whom whose which when where why how
    is are was were am do does did can could would will shall should may might must have has
    tell give write explain list show suggest recommend describe summarize summarise translate
    help find make create generate compose draft name please remind compare define
    hi hello hey thanks ok okay"""
ASKING = frozenset(_ASKING.split())
"""First words of a sentence that asks or requests rather than states."""
MIN_WORDS = 2
"""A one-word sentence ("Sure.", "Thanks!") states nothing."""
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_WORDS = re.compile(r"[a-z']+")


def states_something(turn: str) -> bool:
    """Whether the user ``turn`` contains a statement (see the module docstring).

    >>> states_something("My cat is called Miso."), states_something("What is my cat called?")
    (True, False)
    >>> states_something("Recommend a cat name"), states_something("We moved to Porto. Tips?")
    (False, True)
    """
    for sentence in _SENTENCES.split(turn.strip()):
        words = _WORDS.findall(sentence.lower())
        if len(words) < MIN_WORDS or sentence.rstrip().endswith("?"):
            continue
        if words[0] not in ASKING:
            return True
    return False


def user_voiced(text: str) -> bool:
    """Whether a stored memory ``text`` holds the user's own words: a single message (an
    ingested one, or a consolidated note), or an exchange whose user turn states something.

    >>> user_voiced("User: Where is Porto?\\nAssistant: In Portugal."), user_voiced("Ann: hi")
    (False, True)
    """
    user, reply = split_exchange(text)
    return not reply or states_something(user)
