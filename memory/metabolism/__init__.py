"""The metabolism of memory: reinforcement, decay, consolidation, tiers, quadrants.

The write gate that decides what becomes a memory is :mod:`memory.write.gate`.

- **Decay** (:func:`~memory.metabolism.decay.effective_strength`): ``S = S0 * 2 ** (-a / H)``
  where ``a`` counts the user's *active days* (days on which the user said anything) since the
  memory was last used or reinforced, and ``H`` is the half-life of its phase: **screened**
  (often used, slow decay) or **free** (rarely used, fast decay), after DynamicLoRA's
  screened/free phases. Counting active days, not calendar days, means a user who is away for a
  year comes back to the memories they left (a months-old fact is not forgotten for being months
  old); unlike Adaptive Neural Memory's ``S *= 0.995`` per write, a memory fades only while its
  user keeps talking about other things. Below ``dormant_below`` a memory is **dormant**: kept,
  not recalled, revived when an exchange reinforces it.
- **Sleep cycle** (:func:`~memory.metabolism.sleep.metabolize_user`): hindsight rescoring (the
  user's next turn in the same session is implicit feedback on an exchange; single ingested
  messages have none), phase changes with hysteresis, consolidation of near-duplicate clusters
  into one reinforced memory, promotion ``session -> user`` on recurrence across distinct days
  (bandwidth-limited), quadrant labels, and the migration of older records to schema 3.
- **Resonance** (:func:`~memory.metabolism.resonance.resonate`): the shared tier.
"""
