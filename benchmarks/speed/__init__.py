"""Speed: throughput benchmarks of the env, BPTT, RL and sweeps, the engine A/B timer and the GPU check.

May import: ``benchmarks.sweep``, ``benchmarks.savings``, ``benchmarks.safe_io``, ``agents``,
``savings_gym``; never ``benchmarks.board`` or ``benchmarks.cli``.
"""
