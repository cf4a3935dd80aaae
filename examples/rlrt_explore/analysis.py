"""Per-problem figures of the exploration comparison: pass@k curves, distinct correct paths, 95 % intervals.

Pure functions (no model, no verl). A *record* is one sampled response: ``(problem key, response text,
correct)``; the problem key is anything hashable (a dataset index, a prompt text, a uid prefix).

- pass@k of a problem with c correct of n samples is the unbiased estimator of Chen et al. 2021,
  1 − C(n−c, k) / C(n, k) (``rlrt_recipe.evaluation.pass_at_k``); a policy's pass@k is its mean over problems.
- distinct correct paths of a problem = |{canonical_path(y) : y a correct response}|: how many different
  solutions a policy found, which exploration should keep high.
- intervals across seeds are Student-t intervals: mean ± t_{(1+level)/2, m−1} · s / √m over the m seeds' values
  (s the sample standard deviation). Not a bootstrap: with 5 seeds a percentile bootstrap's standard error is the
  plug-in s·√((m−1)/m)/√m and its quantiles near-normal (±1.96 where t_{0.975,4} = 2.776), so it comes out about a
  third narrower than the t-interval, which is exact for normal seed-to-seed noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from rlrt_explore.reward import canonical_path
from rlrt_recipe.evaluation import pass_at_k, split_uid

Record = tuple[Hashable, str, bool]  # (problem key, response text, correct)


def pass_at_k_curve(n: int, c: int, ks: Iterable[int]) -> list[float]:
    """pass@k of one problem for each k in ``ks``: 1 − C(n−c, k) / C(n, k), n samples, c correct."""
    return [pass_at_k(n, c, k) for k in ks]


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> list[float]:
    """A policy's pass@k for each k in ``ks``: (1/P) Σ_p pass@k(n_p, c_p) over the P problems' ``(n, c)``."""
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem's (n, c), got none")
    ks = list(ks)
    curves = [pass_at_k_curve(n, c, ks) for n, c in counts]  # [P][K]
    return [statistics.fmean(curve[j] for curve in curves) for j in range(len(ks))]


def correct_counts(records: Iterable[Record]) -> dict[Hashable, tuple[int, int]]:
    """``{problem: (n, c)}`` in order of first appearance: n samples of the problem, c of them correct."""
    counts: dict[Hashable, list[int]] = {}
    for problem, _, correct in records:
        count = counts.setdefault(problem, [0, 0])
        count[0] += 1
        count[1] += bool(correct)
    return {problem: (n, c) for problem, (n, c) in counts.items()}


def distinct_correct_paths(records: Iterable[Record],
                           canonical: Callable[[str], str | None] = canonical_path) -> dict[Hashable, int]:
    """``{problem: |{canonical(y) : (problem, y, correct) a record with correct true}|}`` for every problem of
    ``records`` (0 for one without a correct sample). A correct response must have a canonical form: one without
    (``canonical`` gives None) means the verifier and ``canonical`` disagree, and raises."""
    paths: dict[Hashable, set[str]] = {}
    for problem, response, correct in records:
        found = paths.setdefault(problem, set())
        if correct:
            path = canonical(response)
            if path is None:
                raise ValueError(f"problem {problem!r}: response {response[:80]!r} is marked correct but has no "
                                 "canonical path; the records' correctness does not come from this task's verifier")
            found.add(path)
    return {problem: len(found) for problem, found in paths.items()}


def dump_records(samples: Iterable[Mapping[str, Any]], correct_key: str = "acc",
                 threshold: float = 0.5) -> list[Record]:
    """Records from a verl 0.9.1 validation dump (``rlrt_recipe.evaluation.read_dump(trainer.validation_data_dir)``):
    problem key = the prompt uuid of the sample's ``uid`` (``evaluation.split_uid``), response = ``output``,
    correct = its ``correct_key`` value (this task's reward returns ``acc``; ``score`` where absent) ≥ ``threshold``.
    A session with several outputs counts once, with its highest-index output, as ``evaluation.problem_correctness``
    counts it."""
    sessions: dict[tuple[str, str], tuple[int, Record]] = {}
    for sample in samples:
        problem, session, index = split_uid(sample.get("uid"))
        value = sample.get(correct_key, sample.get("score"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not isinstance(sample.get("output"), str):
            raise ValueError(f"dump sample {sample.get('uid')!r} needs a text 'output' and a numeric {correct_key!r} "
                             f"or 'score', got output {type(sample.get('output')).__name__}, {correct_key} {value!r}")
        if (problem, session) not in sessions or index > sessions[problem, session][0]:
            sessions[problem, session] = (index, (problem, sample["output"], value >= threshold))
    return [record for _, record in sessions.values()]


def policy_summary(records: Sequence[Record], ks: Iterable[int]) -> dict[str, Any]:
    """The figures of one policy on one problem set, from its records (every problem sampled the same n times):

        pass_rate               Σ_p c_p / Σ_p n_p
        pass_at_k               {k: mean_pass_at_k} for each k in ``ks``
        distinct_correct_paths  mean over problems of ``distinct_correct_paths``
        solved_fraction         share of problems with c_p > 0
        problems, samples       P and n
    """
    counts = correct_counts(records)
    sizes = {n for n, _ in counts.values()}
    if len(sizes) != 1:
        raise ValueError(f"every problem must have the same number of samples, got sizes {sorted(sizes)}")
    ks = list(ks)
    distinct = distinct_correct_paths(records)
    return {
        "pass_rate": sum(c for _, c in counts.values()) / sum(n for n, _ in counts.values()),
        "pass_at_k": dict(zip(ks, mean_pass_at_k(list(counts.values()), ks), strict=True)),
        "distinct_correct_paths": statistics.fmean(distinct.values()),
        "solved_fraction": sum(c > 0 for _, c in counts.values()) / len(counts),
        "problems": len(counts),
        "samples": sizes.pop(),
    }


def student_t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with ``df`` (integer ≥ 1) degrees of freedom, in closed form with
    θ = atan(t / √df) (Abramowitz & Stegun 26.7.3–4):

        df odd:  (2/π) · (θ + sin θ · Σ_{j=0}^{(df−3)/2} a_j cos^{2j+1} θ),   a_0 = 1, a_j = a_{j−1} · 2j / (2j+1)
        df even: sin θ · Σ_{j=0}^{(df−2)/2} b_j cos^{2j} θ,                   b_0 = 1, b_j = b_{j−1} · (2j−1) / (2j)
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df (degrees of freedom) must be an integer >= 1, got {df!r}")
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2:
        total, term = 0.0, cos
        for j in range((df - 1) // 2):
            if j:
                term *= cos * cos * (2 * j) / (2 * j + 1)
            total += term
        mass = 2.0 / math.pi * (theta + sin * total)
    else:
        total, term = 0.0, 1.0
        for j in range(df // 2):
            if j:
                term *= cos * cos * (2 * j - 1) / (2 * j)
            total += term
        mass = sin * total
    return min(1.0, mass)  # rounding can put the sum an ulp or two above 1 for large t


def student_t_quantile(level: float, df: int) -> float:
    """t with P(|T| ≤ t) = ``level`` for ``df`` degrees of freedom (t_{(1+level)/2, df}; 2.776 for level 0.95,
    df 4), by bisection on ``student_t_two_sided_mass`` to 1e-12."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    low, high = 0.0, 1.0
    while student_t_two_sided_mass(high, df) < level:
        high *= 2.0
    while high - low > 1e-12 * max(1.0, high):
        middle = (low + high) / 2.0
        low, high = (middle, high) if student_t_two_sided_mass(middle, df) < level else (low, middle)
    return (low + high) / 2.0


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: x̄ ∓ t_{(1+level)/2, m−1} · s / √m over the m values (one per seed), s the sample
    standard deviation. Needs m ≥ 2 (one seed has no spread to interval)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"a {level:.0%} interval across seeds needs values from at least 2 seeds, got {len(values)}")
    mean = statistics.fmean(values)
    half = student_t_quantile(level, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def intervals_across_seeds(per_seed: Sequence[Mapping[Hashable, float]],
                           level: float = 0.95) -> dict[Hashable, tuple[float, float, float]]:
    """``{key: t_interval([seed[key] for seed in per_seed])}`` for every key all seeds have, in the first seed's
    order: keys are k for pass@k curves, training steps for reward curves."""
    if not per_seed:
        raise ValueError("intervals_across_seeds needs the values of at least 2 seeds, got none")
    keys = [key for key in per_seed[0] if all(key in seed for seed in per_seed[1:])]
    return {key: t_interval([seed[key] for seed in per_seed], level) for key in keys}
