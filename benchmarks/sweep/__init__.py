"""Scale: a sweep of runs over hidden sizes, seeds and field gains, and its summary.

May import: ``benchmarks.savings``, ``benchmarks.safe_io``, ``agents``, ``savings_gym``; never
``benchmarks.board``, ``benchmarks.speed`` or ``benchmarks.cli``.
"""
