"""The science: how savings is measured on a learner.

``presets`` (phases and presets), ``protocol`` (the run loop), ``results`` (result files, checkpoints,
resuming), ``metrics`` (savings measures), ``reach`` (reach quality and competence), ``paradigms``
(error-clamp and paradigm measures), ``recompute`` (checking reported metrics), ``latent`` (preparatory
activity), ``state_space`` (the two-state null model), ``figures``, ``learners`` (building the learners
a run names), ``run`` (one run), ``summary`` (tables of finished runs) and ``zoo_callback`` (the
protocol inside an rl-zoo3 run).

May import: ``benchmarks.safe_io``, ``agents``, ``savings_gym``; never ``benchmarks.sweep``,
``benchmarks.board``, ``benchmarks.speed`` or ``benchmarks.cli``.
"""
