"""Rule-based math reward for verl: math-verify on the last ``\\boxed{...}`` answer of a response.

Load it in any recipe with::

    reward.custom_reward_function.path=pkg://rlrt_recipe.reward
    reward.custom_reward_function.name=compute_score     # verl's default name
    +reward.custom_reward_function.reward_kwargs.timeout_seconds=5   # optional, TIMEOUT_SECONDS by default

verl 0.9.1 imports the module by name (``verl.utils.import_utils.load_extern_object``) and its reward loop calls
``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)`` in an executor thread
(``experimental/reward_loop/reward_manager/naive.py``); ``get_custom_reward_fn`` in
``trainer/ppo/reward.py`` adds the keys of ``reward.custom_reward_function.reward_kwargs`` as keyword
arguments (they win over verl's own). The only one read here is ``timeout_seconds``.

The answer never hangs the reward thread. math-verify runs in worker processes (``python -c`` children
importing this module and math-verify only: no torch, no verl, not the parent's ``__main__``), where a
``SIGALRM`` timer in the worker's main thread stops ``parse`` + ``verify`` after ``timeout_seconds``
(sympy evaluating ``9^{9^{9^{9}}}`` or ``(10^{10})!`` would otherwise run for ever). One timer of our own
rather than math-verify's timeouts: those stop each parse and each comparison separately, in whole seconds,
and report a timeout as a plain "not equal", so nothing could flag it. A worker that has not answered
``KILL_GRACE_SECONDS`` later (stuck in C code the timer cannot interrupt), or that died, is killed; its slot
starts a fresh worker on next use. The pool is per process, created on the first answer, up to
``POOL_WORKERS`` workers, killed at exit. Nothing in the calling process touches ``signal``.

Rows with ``extra_info.answer_format == "multiple_choice"`` (the RLSD benchmarks, ``rlrt_recipe.data``) are
judged without math-verify: the last ``\\boxed{}`` names an option by its letter or its text
(``rlrt_recipe.choices``), compared with the ground-truth letter. Rows whose ``answer_format`` is ``"free_form"``
or absent (every text set) go through math-verify as above.

The returned dict has the same keys for every row (verl makes a reward-extra-info column of each):
``score``, ``acc``, ``has_answer`` and ``timeout`` (1.0 when math-verify gave no verdict in time: the answer
scores 0). verl's validation reports the ``acc`` column as ``val-core/<data_source>/acc/mean@<n>`` (avg@n).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import wait
from typing import Any

from rlrt_recipe.choices import (
    ANSWER_FORMATS,
    FREE_FORM,
    MULTIPLE_CHOICE,
    answer_letter,
    label_letter,
    statement_letter,
)

logger = logging.getLogger(__name__)

BOXED = "\\boxed{"
# Longer final answers are not judged (score 0, timeout 0). Not a safety net any more (the time limit bounds
# every answer) but a throughput one: no competition answer (AIME, AMC, MATH500) comes near it, and a runaway
# answer would hold a worker for up to the whole time limit.
MAX_ANSWER_CHARS = 512
TIMEOUT_SECONDS = 5.0  # default time limit of parse + verify for one answer; ordinary answers take milliseconds
KILL_GRACE_SECONDS = 2.0  # the caller kills a worker that has not answered timeout_seconds + this after asking
# Worker processes per calling process (verl runs reward.num_workers = 8 reward actors), each started only when
# that many threads ask at once.
POOL_WORKERS = min(4, os.cpu_count() or 1)
STARTUP_SECONDS = 120.0  # a worker must import math-verify and judge one answer within this, or the reward raises
READY = "ready"
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Appended, not prepended: where this package is installed the child finds it first, and the standard library
# is never shadowed; a source checkout that is not installed is still found.
_WORKER_CODE = (
    f"import sys; sys.path.append({_PACKAGE_PARENT!r}); from rlrt_recipe.reward import _serve; _serve()"
)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text``, braces matched, or None.

    Nested braces are kept (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``). If the last ``\\boxed{`` is
    never closed (a response cut off at the length limit) there is no final answer: an earlier complete
    box is not used, because the model moved past it.
    """
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth = 1
    begin = start + len(BOXED)
    for pos in range(begin, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[begin:pos]
    return None


def is_equivalent(gold_text: str, answer: str) -> bool:
    """math-verify's verdict on two bare answers: ``verify(parse(\\boxed{gold}), parse(\\boxed{answer}))``.

    Runs in the calling thread with math-verify's own timeouts off (they need ``signal.alarm`` in the main
    thread), so it has no time limit: the reward calls it inside a worker, under the worker's timer;
    scripts/bench_reward.py calls it directly as the in-thread baseline.
    """
    # Imported here, not at the top: the calling process only talks to workers and never needs sympy.
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    extraction = (LatexExtractionConfig(), ExprExtractionConfig())
    gold = parse(BOXED + gold_text + "}", extraction_config=extraction, parsing_timeout=None)
    if not gold:
        return False
    return verify(gold, parse(BOXED + answer + "}", extraction_config=extraction, parsing_timeout=None),
                  timeout_seconds=None)


class _TimeUp(BaseException):
    """The worker's timer fired. A BaseException, so math-verify's ``except Exception`` cannot swallow it."""


def _raise_time_up(signum: int, frame: Any) -> None:
    raise _TimeUp


def _serve() -> None:
    """A worker's main loop: one JSON request per stdin line, one JSON verdict per stdout line.

    Request ``{"gold", "answer", "timeout_seconds"}``; verdict ``{"correct", "timed_out"}`` where
    ``timed_out`` means ``is_equivalent`` did not finish within ``timeout_seconds`` (then ``correct`` is
    false). Ends when the parent closes stdin, exits or dies.
    """
    replies = sys.stdout
    sys.stdout = sys.stderr  # a library's stray print must not corrupt the verdict lines
    # math-verify warns once that its own timeouts are off; here the timer below is the time limit
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    signal.signal(signal.SIGALRM, _raise_time_up)
    is_equivalent("1", "1")  # import sympy and build math-verify's parsers before the first timed answer
    print(READY, file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        # Disarming inside the try: a timer that fires after is_equivalent returned still lands in the except,
        # and the one-shot timer cannot fire twice.
        try:
            signal.setitimer(signal.ITIMER_REAL, request["timeout_seconds"])
            correct = is_equivalent(request["gold"], request["answer"])
            signal.setitimer(signal.ITIMER_REAL, 0)
            timed_out = False
        except _TimeUp:
            correct, timed_out = False, True
        print(json.dumps({"correct": bool(correct), "timed_out": timed_out}), file=replies, flush=True)


class _Worker:
    """One worker process (``_serve``), used by one thread at a time."""

    def __init__(self) -> None:
        # A fresh interpreter (fork + exec, like multiprocessing's spawn) rather than multiprocessing itself:
        # spawn re-imports the parent's __main__ in the child, which in verl is ray's default_worker.py or
        # verl.trainer.main_ppo (torch and all).
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8"
        )
        if (self._reply(STARTUP_SECONDS) or "").strip() != READY:
            exit_code = self.process.poll()
            self.kill()
            raise RuntimeError(
                f"the math-verify worker (pid {self.process.pid}: {sys.executable} -c {_WORKER_CODE!r}) "
                + (f"exited with code {exit_code}" if exit_code is not None else f"hung for {STARTUP_SECONDS} s")
                + " before it was ready; its error is on stderr above. Check that math-verify imports in this "
                "Python environment"
            )

    def _reply(self, seconds: float) -> str | None:
        """The worker's next stdout line; ``""`` if it exited, None if nothing came within ``seconds``."""
        if not wait([self.process.stdout], timeout=seconds):
            return None
        return self.process.stdout.readline()

    def judge(self, gold_text: str, answer: str, timeout_seconds: float) -> tuple[bool, bool] | None:
        """``(correct, timed_out)`` from the worker, or None if it gave no verdict within the kill deadline
        (``timeout_seconds + KILL_GRACE_SECONDS``) or died."""
        request = {"gold": gold_text, "answer": answer, "timeout_seconds": timeout_seconds}
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None
        line = self._reply(timeout_seconds + KILL_GRACE_SECONDS)
        if not line:
            return None
        verdict = json.loads(line)
        return verdict["correct"], verdict["timed_out"]

    def kill(self) -> None:
        """Kill the process, reap it and close its pipes."""
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        with contextlib.suppress(BrokenPipeError):  # close() flushes a request the dead worker never read
            self.process.stdin.close()


class _Pool:
    """Up to ``size`` workers shared by the threads of one process.

    A thread takes a slot from the stack (waiting while all are in use), uses its worker for one answer and
    puts it back; a slot holds None until its worker is first needed or after its worker was killed, so the
    next thread starts a fresh one. A slot is never shared, so no worker sees two requests at once. Last in,
    first out: a process that asks from one thread at a time keeps reusing one warm worker.
    """

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self._slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(size):
            self._slots.put(None)
        self._workers: set[_Worker] = set()  # every live worker, idle or in use: what close() kills
        self._lock = threading.Lock()

    def judge(self, gold_text: str, answer: str, timeout_seconds: float, row: str) -> tuple[bool, bool]:
        """``(correct, timed_out)`` for one answer; a worker without a verdict is killed and counts as timed out."""
        worker = self._slots.get()
        try:
            if worker is None:
                worker = _Worker()
                with self._lock:
                    self._workers.add(worker)
            verdict = worker.judge(gold_text, answer, timeout_seconds)
            if verdict is None:
                exit_code = worker.process.poll()
                logger.warning(
                    "math-verify worker pid %d %s on the answer of %s; replacing it, the answer scores 0 "
                    "with timeout=1", worker.process.pid,
                    f"exited with code {exit_code}" if exit_code is not None
                    else f"gave no verdict within {timeout_seconds + KILL_GRACE_SECONDS:g} s and was killed", row,
                )
                self._discard(worker)
                worker = None
                verdict = (False, True)
            return verdict
        except BaseException:
            if worker is not None:  # its reply may still be on the way: never hand it to another thread
                self._discard(worker)
                worker = None
            raise
        finally:
            self._slots.put(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._workers.discard(worker)

    def close(self) -> None:
        """Kill every worker. In a forked child that inherited this pool, do nothing: they are not its children."""
        if os.getpid() != self.pid:
            return
        with self._lock:
            workers, self._workers = self._workers, set()
        for worker in workers:
            worker.kill()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    """This process's pool, created on first use (and again in a forked child, whose inherited one is not its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _Pool(POOL_WORKERS)
            atexit.register(_POOL.close)
        return _POOL


def _row(data_source: str, extra_info: dict | None) -> str:
    """The row as errors and warnings name it."""
    return f"data_source={data_source!r}, extra_info.index={(extra_info or {}).get('index')!r}"


def _gold_text(ground_truth: Any, data_source: str, extra_info: dict | None) -> str:
    """The ground truth as answer text: numbers as written, ``$...$`` and a ``\\boxed{}`` wrapper removed."""
    if isinstance(ground_truth, bool) or not isinstance(ground_truth, (str, int, float)):
        raise TypeError(
            f"ground_truth must be a string or a number, got {type(ground_truth).__name__} "
            f"({_row(data_source, extra_info)}); regenerate the parquet with scripts/prepare_data.py"
        )
    text = str(ground_truth).strip().strip("$").strip()
    text = last_boxed(text) or text
    if not text:
        raise ValueError(
            f"empty ground_truth ({_row(data_source, extra_info)}); scripts/prepare_data.py drops such rows, "
            "regenerate the parquet"
        )
    return text


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response against the ground truth (verl's custom-reward signature).

    Returns ``{"score": s, "acc": float(correct), "has_answer": float(bool), "timeout": float(bool)}`` where
    - ``has_answer`` = 1.0 iff the response ends its last ``\\boxed{`` with a closing brace and a non-empty
      answer;
    - ``acc`` = 1.0 iff that answer is equivalent to the ground truth under math-verify
      (``verify(gold, answer)``: symbolic / numeric equality, so ``\\frac{1}{2}`` equals ``0.5``), decided
      within ``timeout_seconds``;
    - ``timeout`` = 1.0 iff math-verify gave no verdict within ``timeout_seconds`` (the worker's timer stopped
      it, or the worker missed the kill deadline or died and was replaced); such an answer scores 0;
    - ``score`` = ``acc``: 1.0 correct, 0.0 otherwise (wrong, no box, empty box, unparsable, too long, timed
      out). No format bonus or penalty.
    Other ``kwargs`` (router addresses) are accepted and ignored. A missing or empty ground truth raises,
    naming the row: it is a data error, not a wrong answer.

    ``extra_info["answer_format"]`` picks the judge: absent or ``"free_form"`` as above; ``"multiple_choice"``
    by ``_choice_score`` (same keys, ``timeout`` always 0.0); anything else raises, naming the row.
    """
    if not 0 < float(timeout_seconds) < math.inf:
        raise ValueError(
            f"reward.custom_reward_function.reward_kwargs.timeout_seconds must be > 0 and finite (seconds), got "
            f"{timeout_seconds!r}"
        )
    answer_format = (extra_info or {}).get("answer_format")
    if answer_format == MULTIPLE_CHOICE:
        return _choice_score(solution_str or "", ground_truth, data_source, extra_info)
    if answer_format not in (None, FREE_FORM):
        raise ValueError(
            f"extra_info.answer_format must be one of {list(ANSWER_FORMATS)} or absent, got {answer_format!r} "
            f"({_row(data_source, extra_info)}); regenerate the parquet with scripts/prepare_data.py"
        )
    gold_text = _gold_text(ground_truth, data_source, extra_info)
    answer = last_boxed(solution_str or "")
    has_answer = bool(answer and answer.strip())
    correct = timed_out = False
    if has_answer and len(answer) <= MAX_ANSWER_CHARS:
        correct, timed_out = _pool().judge(gold_text, answer, float(timeout_seconds), _row(data_source, extra_info))
    return {"score": float(correct), "acc": float(correct), "has_answer": float(has_answer),
            "timeout": float(timed_out)}


def _choice_score(solution_str: str, ground_truth: Any, data_source: str, extra_info: dict) -> dict[str, float]:
    """A multiple-choice row: the response's option letter against the ground-truth letter.

    The response's answer is its last ``\\boxed{}``, read by ``choices.answer_letter`` (a label such as ``B``,
    ``(B)``, ``B. 12``, else an option's exact text: ours); ``has_answer`` = 1.0 iff that box is closed and
    non-empty, as for free-form rows. A response with no ``\\boxed{`` at all falls back (ours) to
    ``choices.statement_letter``: a last line that only states the answer (``B``, ``Answer: B``,
    ``The answer is (B).``) counts as that answer. A letter outside the listed options names none; answers over
    ``MAX_ANSWER_CHARS`` are not read. The ground truth must be one letter (of the listed options, if any).
    """
    raw_options = extra_info.get("options")
    options = [str(option) for option in raw_options] if raw_options is not None else []
    gold = label_letter(str(ground_truth), len(options) or None) if isinstance(ground_truth, str) else None
    if gold is None or gold != str(ground_truth).strip():
        raise ValueError(
            f"a multiple-choice ground_truth must be one option letter"
            f"{f' of {len(options)} options' if options else ''}, got {ground_truth!r} "
            f"({_row(data_source, extra_info)}); regenerate the parquet with scripts/prepare_data.py"
        )
    if BOXED in solution_str:
        answer = last_boxed(solution_str)
        has_answer = bool(answer and answer.strip())
        letter = answer_letter(answer, options) if has_answer and len(answer) <= MAX_ANSWER_CHARS else None
    else:
        letter = statement_letter(solution_str)
        has_answer = letter is not None
    correct = letter == gold
    return {"score": float(correct), "acc": float(correct), "has_answer": float(has_answer), "timeout": 0.0}
