"""The leaderboard (submission schema, validation, ranking, rendering) and the one-run report.

May import: ``benchmarks.sweep``, ``benchmarks.savings``, ``benchmarks.safe_io``, ``agents``,
``savings_gym``; never ``benchmarks.speed`` or ``benchmarks.cli``.
"""
