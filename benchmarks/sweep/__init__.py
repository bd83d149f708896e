"""Scale: a sweep of runs over hidden sizes, seeds and field gains, and its summary.

``cells`` (one cell and the sweep's files), ``backends`` (local processes or Ray), ``runner``
(:func:`~benchmarks.sweep.runner.run_sweep`) and ``summary`` (savings vs hidden size).

May import: ``benchmarks.savings``, ``benchmarks.safe_io``, ``agents``, ``savings_gym``; never
``benchmarks.board``, ``benchmarks.speed`` or ``benchmarks.cli``.
"""
