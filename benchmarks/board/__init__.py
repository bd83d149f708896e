"""The leaderboard and the one-run report.

``schema`` (what a submission is), ``validation`` (checking one), ``entries`` (a board folder: its
entries, near-duplicates, adding one), ``ranking``, ``rendering`` (Markdown and HTML) and ``report``.

May import: ``benchmarks.sweep``, ``benchmarks.savings``, ``benchmarks.safe_io``, ``agents``,
``savings_gym``; never ``benchmarks.speed`` or ``benchmarks.cli``.
"""
