"""Learners that see only what the environments show them.

``interface`` is the learner-facing API the protocol drives; ``bptt`` (with ``bptt_compiled`` and
``controllers``) trains GRU controllers by backpropagation through time; ``sb3/`` holds the
Stable-Baselines3 learners; ``serialization`` writes and reads weights-only checkpoints.

May import: ``savings_gym`` only; never ``benchmarks``.
"""
