"""Stable-Baselines3 learners behind the protocol's agent interface (needs the ``rl`` extra).

Hyperparameters (rl-zoo3 files, the learner's spec), the learner itself (:class:`~agents.sb3.learner.SB3Agent`),
its policies and normalisation, imitation of BPTT teachers and pretraining.

May import: ``agents`` (``interface``, ``bptt``, ``controllers``, ``serialization``) and ``savings_gym``;
never ``benchmarks``. Nothing is re-exported here, so importing one module does not load the others.
"""
