"""Recall: query -> views -> scores over all memories -> ranking -> token budget -> block.

The pipeline (:meth:`~memory.recall.recaller.Recaller.recall`), on one user's
:class:`~memory.recall.index.UserIndex`:

1. Query analysis (:func:`~memory.recall.query.analyse_query`): when the query names one known
   speaker ("What did Caroline research?"), that speaker is the subject; the dense view is
   rewritten in the subject's own voice ("What did I research?", as their memories are worded)
   and the lexical view drops the name (said in half the conversation, it matches everything).
2. Scores for every memory (:func:`~memory.recall.ranking.fused_scores`): cosine similarity of
   the memory and of its session context, the session centroid, and BM25, each z-normalised over
   the collection and summed with fixed weights (CombSUM of z-scores: Fox and Shaw, TREC-2 1994;
   Montague and Aslam, CIKM 2001); memories of other speakers than the subject are damped;
   strength and recency re-weight; a strong memory lends part of its score to its session
   neighbours.
3. Near-duplicates of a better-ranked memory are left out
   (:func:`~memory.recall.ranking.distinct`).
4. Packing (:func:`~memory.recall.render.render_block`): best first into the cl100k token
   budget, grouped by event date so the model can answer "when" questions. The one renderer of
   injected text, shared by the proxy and the benchmarks.

When the index is not built yet (or holds no vectors) the dense candidates come from Chroma and
are ranked by cosine similarity alone.
"""
