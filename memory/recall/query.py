"""Query analysis: the dense and lexical views of a recall query."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class QueryViews:
    """What the query is turned into: ``dense`` is embedded, ``lexical`` goes to BM25,
    ``subject`` is the speaker the query is about (None when it names no or several known
    speakers)."""

    dense: str
    lexical: str
    subject: str | None = None


_FIRST_PERSON = (
    (r"\b(her|his)\b", "my"),
    (r"\b(she|he)\b", "I"),
    (r"\bhim\b", "me"),
    (r"\bdoes I\b", "do I"),
    (r"\bhas I\b", "have I"),
    (r"\bis I\b", "am I"),
)


def analyse_query(query: str, names: Mapping[str, str]) -> QueryViews:
    """Split ``query`` into its dense and lexical views (see the module docstring).

    ``names`` maps lower-cased first names of the user's known speakers to the speaker
    (:func:`memory.recall.index.first_names`).

    >>> v = analyse_query("What did Caroline's mum say to her?", {"caroline": "Caroline"})
    >>> v.subject, v.dense, v.lexical
    ('Caroline', 'What did my mum say to my?', 'What did  mum say to her?')
    >>> analyse_query("hello", {}).dense
    'hello'
    """
    named = [
        (first, speaker)
        for first, speaker in names.items()
        if re.search(rf"\b{re.escape(first)}\b", query, flags=re.IGNORECASE)
    ]
    if not named:
        return QueryViews(query, query)
    lexical = query
    for first, _ in named:
        lexical = re.sub(rf"\b{re.escape(first)}('s)?\b", "", lexical, flags=re.IGNORECASE)
    if len(named) > 1:
        return QueryViews(query, lexical)
    first, speaker = named[0]
    dense = re.sub(rf"\b{re.escape(first)}'s\b", "my", query, flags=re.IGNORECASE)
    dense = re.sub(rf"\b{re.escape(first)}\b", "I", dense, flags=re.IGNORECASE)
    for pattern, replacement in _FIRST_PERSON:
        dense = re.sub(pattern, replacement, dense, flags=re.IGNORECASE)
    return QueryViews(dense, lexical, speaker)
