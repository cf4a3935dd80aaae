"""A CPU toy task on which the methods can be compared in minutes (docs/toy_comparison.md).

An example, not part of the installed package: scripts/warm_start.py and scripts/toy_report.py put
``examples/`` on ``sys.path``, pytest does the same (``pythonpath`` in pyproject.toml).

``task``: single-digit sums with the answer in ``\\boxed{}`` (verl parquet rows, a seeded train/held-out
split); ``warm_start``: a few-million-parameter model made locally and a seeded supervised warm start;
``semantic``: the teacher check Δ = τ − s on held-out answer tokens.
"""
