"""A CPU task on which exploration can matter: reach a target number by one of many move sequences.

An example, not part of the installed package (like ``rlrt_toy``): pytest puts ``examples/`` on ``sys.path``
(``pythonpath`` in pyproject.toml); run the warm start with ``PYTHONPATH=examples python -m rlrt_explore``.

``reward``: the verifier, self-contained so that main_ppo can load it by file path; ``task``: the seeded
problems, their correct paths, verl parquet rows and the warm/train/held-out split; ``warm_start``: the toy's
0.56 M-parameter model warm-started to a low pass rate, its measurement and the teacher check; ``analysis``:
per-problem pass@k, distinct correct paths, Student-t intervals across seeds, records from verl's validation dump.
"""
