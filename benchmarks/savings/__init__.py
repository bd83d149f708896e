"""The science: how savings is measured on a learner.

Protocol presets and phases, the protocol's run loop and result files, the metrics (savings, reach
quality, paradigm measures), the latent (preparatory activity) analysis, the two-state null model,
figures, and one run of a named learner (``run``).

May import: ``benchmarks.safe_io``, ``agents``, ``savings_gym``; never ``benchmarks.sweep``,
``benchmarks.board``, ``benchmarks.speed`` or ``benchmarks.cli``.
"""
