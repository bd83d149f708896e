"""Protocols, metrics, the leaderboard, benchmarks and the command line of savings-gym.

By concern, each a sub-package or module:

- ``safe_io``: reading untrusted files safely and writing files atomically (imports nothing of the project).
- ``savings/``: the science: protocol presets, the run loop, metrics, latent analysis, figures, one run.
- ``sweep/``: many runs across hidden sizes and seeds, on local processes or Ray, and their summary.
- ``board/``: the leaderboard (schema, validation, ranking, rendering) and the one-run report.
- ``speed/``: throughput benchmarks (env, BPTT, RL, sweep) and the GPU check.
- ``cli``: the ``savings-gym`` command line, on top of everything.

Imports point one way: ``benchmarks -> agents -> savings_gym``; inside ``benchmarks``,
``cli -> speed, board -> sweep -> savings -> safe_io`` (``tests/test_layout.py`` checks both).
"""
