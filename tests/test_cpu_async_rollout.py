"""Partial rollouts on the hf server: what verl's async V1 trainers (colocate_async, separate_async) ask of a rollout.

The trainers pause every server with ``abort_all_requests`` (``verl/checkpoint_engine/base.py:477``), push weights,
then ``resume_generation``; ``FullyAsyncLLMServerClient.generate`` (``verl/workers/rollout/llm_server.py:225``)
resumes each aborted request with prompt + tokens so far and the rest of the budget. The server is driven from
threads here, as the threaded Ray actor drives it; a forward hook holds a generation at a chosen token so that the
abort lands there, not wherever the scheduler happens to put it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from rlrt_recipe.cpu.rollout import GENERATE_THREADS, start_server_actor
from rlrt_recipe.cpu.server import HFRolloutServer
from rlrt_recipe.testing import TinyModelSpec, build_tiny_model
from rlrt_recipe.testing.forward import response_log_probs

PROMPT = [1, 305, 203, 320, 314, 225, 22, 284, 225, 23, 35, 2, 203, 1, 329, 203]
GREEDY = {"temperature": 0, "top_p": 1.0, "top_k": -1, "logprobs": True}
SAMPLED = {"temperature": 0.7, "top_p": 1.0, "top_k": -1, "logprobs": True}
BUDGET = 24  # tokens per response; the tiny random model never emits EOS from PROMPT within it
HELD_AT = 6  # the forward call (1 = prefill) a test holds: the abort then returns exactly 6 tokens
PARKED = 0.3  # seconds a parked request must stay unanswered (a negative check: nothing should happen)


@pytest.fixture
def server(tiny_model_dir) -> HFRolloutServer:
    """A fresh server per test: the gate state must not leak between tests."""
    return HFRolloutServer(tiny_model_dir, prompt_length=64, response_length=BUDGET)


@pytest.fixture(scope="module")
def reference(tiny_model_dir) -> AutoModelForCausalLM:
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> AutoModelForCausalLM:
    """The same architecture with other weights: what the actor pushes after an update."""
    other_dir = build_tiny_model(tmp_path_factory.mktemp("other_model"), TinyModelSpec(seed=1))
    return AutoModelForCausalLM.from_pretrained(other_dir, dtype=torch.float32).eval()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@contextmanager
def hold_forward(model: torch.nn.Module, call: int, until: Callable[[], bool]) -> Iterator[threading.Event]:
    """Hold the model's ``call``-th forward until ``until()`` is true; yields an event set when it is reached.
    A forward that returns the logits of token t comes before the server's between-token check of token t."""
    reached = threading.Event()
    calls = 0

    def hook(module, args, output):
        nonlocal calls
        calls += 1
        if calls != call:
            return
        reached.set()
        deadline = time.monotonic() + 60
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"forward {call} was held for 60 s: the test never released it")
            time.sleep(0.001)

    handle = model.register_forward_hook(hook)
    try:
        yield reached
    finally:
        handle.remove()


def still_parked(future: Future) -> bool:
    return not wait([future], timeout=PARKED).done


def assert_log_probs(output_log_probs: list[float], model, prompt: list[int], response: list[int], temperature: float):
    expected = response_log_probs(model, prompt, response, temperature)  # [R]
    torch.testing.assert_close(torch.tensor(output_log_probs), expected, atol=1e-5, rtol=0)


def abort_at(server: HFRolloutServer, pool: ThreadPoolExecutor, params: dict, **abort_kwargs):
    """Start a request, abort it at its HELD_AT-th token; return (partial output, abort's answer)."""
    with hold_forward(server.model, HELD_AT, until=lambda: server.paused) as reached:
        running = pool.submit(server.generate, "running", PROMPT, {**params, "max_tokens": BUDGET})
        assert reached.wait(60), "the request never reached the held forward"
        aborted = server.abort_all_requests(**abort_kwargs)
    return running.result(timeout=60), aborted


def test_abort_returns_the_tokens_so_far_with_their_log_probs(server, reference, pool):
    """An abort mid-generation must return what was generated (not drop it, not run on to the budget), marked
    "aborted" so verl's client resumes it, with each token's log-prob as verl's actor will recompute it:
    log_softmax(logits / T) of a teacher-forced forward."""
    torch.manual_seed(0)
    partial, aborted = abort_at(server, pool, SAMPLED)
    assert aborted == {"aborted_count": 1, "request_ids": ["running"]}
    assert partial.stop_reason == "aborted"
    assert len(partial.token_ids) == len(partial.log_probs) == HELD_AT
    assert_log_probs(partial.log_probs, reference, PROMPT, partial.token_ids, temperature=0.7)
    assert partial.extra_fields["global_steps"] is None  # no weights pushed yet


def test_resumed_request_continues_to_a_completed_output_within_its_budget(server, reference, pool):
    """verl's client resumes with prompt + partial tokens and max_tokens = budget - len(partial)
    (llm_server.py:293, 331): the pieces must add up to the uninterrupted greedy response, budget respected."""
    partial, _ = abort_at(server, pool, GREEDY)
    server.resume_generation()
    remaining = {**GREEDY, "max_tokens": BUDGET - len(partial.token_ids)}
    rest = server.generate("resumed", PROMPT + partial.token_ids, remaining)
    uninterrupted = server.generate("whole", PROMPT, {**GREEDY, "max_tokens": BUDGET})

    assert (partial.stop_reason, rest.stop_reason, uninterrupted.stop_reason) == ("aborted", "completed", "completed")
    assert len(partial.token_ids) + len(rest.token_ids) == BUDGET
    assert partial.token_ids + rest.token_ids == uninterrupted.token_ids
    torch.testing.assert_close(
        torch.tensor(partial.log_probs + rest.log_probs), torch.tensor(uninterrupted.log_probs), atol=1e-5, rtol=0
    )
    assert_log_probs(partial.log_probs + rest.log_probs, reference, PROMPT, uninterrupted.token_ids, temperature=1.0)


def test_abort_drops_a_request_waiting_for_the_model(server, pool):
    """A request admitted but queued behind the running one is aborted too, empty (vLLM drops queued requests
    on pause), and counted: abort_all_requests returns only once both have returned."""
    with hold_forward(server.model, HELD_AT, until=lambda: server.paused) as reached:
        running = pool.submit(server.generate, "running", PROMPT, {**GREEDY, "max_tokens": BUDGET})
        assert reached.wait(60)
        queued = pool.submit(server.generate, "queued", PROMPT, {**GREEDY, "max_tokens": BUDGET})
        assert still_parked(queued)  # waits for the model
        aborted = server.abort_all_requests()
    assert aborted["aborted_count"] == 2 and sorted(aborted["request_ids"]) == ["queued", "running"]
    assert len(running.result(timeout=60).token_ids) == HELD_AT
    empty = queued.result(timeout=60)
    assert (empty.token_ids, empty.log_probs, empty.stop_reason) == ([], [], "aborted")


def test_request_arriving_during_pause_waits_for_resume(server, pool):
    """colocate_async aborts after sampling and resumes after the weight push (trainer_colocate_async.py:38-48);
    requests arriving in between (the client's retries) are parked, not failed and not run on old weights."""
    assert server.abort_all_requests() == {"aborted_count": 0, "request_ids": []}
    parked = pool.submit(server.generate, "parked", PROMPT, {**GREEDY, "max_tokens": 8})
    assert still_parked(parked)
    server.resume_generation()
    output = parked.result(timeout=60)
    assert output.stop_reason == "completed" and len(output.token_ids) == 8


def test_reject_request_fails_arrivals_until_resume(server, pool):
    """abort_all_requests(reject_request=True) (separate_async's switch_to_trainer, trainer_separate_async.py:418):
    requests behind the gate come back at once, empty and "aborted", so the client retries them elsewhere; one
    parked by an earlier plain abort is rejected too. A later plain abort parks again, and resume admits."""
    server.abort_all_requests()
    parked = pool.submit(server.generate, "parked", PROMPT, {**GREEDY, "max_tokens": 8})
    assert still_parked(parked)
    server.abort_all_requests(reject_request=True)
    arriving = server.generate("arriving", PROMPT, {**GREEDY, "max_tokens": 8})
    for rejected in (parked.result(timeout=60), arriving):
        assert (rejected.token_ids, rejected.stop_reason) == ([], "aborted")
        assert rejected.extra_fields == {"global_steps": None}

    server.abort_all_requests()
    parked_again = pool.submit(server.generate, "parked_again", PROMPT, {**GREEDY, "max_tokens": 8})
    assert still_parked(parked_again)
    server.resume_generation()
    assert parked_again.result(timeout=60).stop_reason == "completed"


def test_weights_loaded_during_pause_are_the_version_reported_after_resume(server, reference, other_model, pool):
    """global_steps is the weights version the returned tokens came from: the partial reports the version before
    the push, the resumed tokens and a request parked across the push the new one, and their log-probs are the
    new model's. verl's client turns the two into the trajectory's min/max_global_steps (llm_server.py:324-327)."""
    server.load_weights(dict(reference.named_parameters()), global_steps=1)
    partial, _ = abort_at(server, pool, GREEDY)
    assert partial.stop_reason == "aborted"
    parked = pool.submit(server.generate, "parked", PROMPT, {**GREEDY, "max_tokens": 8})
    server.load_weights(dict(other_model.named_parameters()), global_steps=2)  # must not wait for the parked one
    assert still_parked(parked)
    server.resume_generation()
    prefix = PROMPT + partial.token_ids
    rest = server.generate("resumed", prefix, {**GREEDY, "max_tokens": BUDGET - len(partial.token_ids)})

    assert partial.extra_fields["global_steps"] == 1
    assert rest.extra_fields["global_steps"] == 2 and parked.result(timeout=60).extra_fields["global_steps"] == 2
    assert_log_probs(partial.log_probs, reference, PROMPT, partial.token_ids, temperature=1.0)
    assert_log_probs(rest.log_probs, other_model, prefix, rest.token_ids, temperature=1.0)
    old_weights = response_log_probs(reference, prefix, rest.token_ids)  # [R]
    assert not torch.allclose(torch.tensor(rest.log_probs), old_weights, atol=1e-3)


def test_load_weights_waits_for_a_running_generation(server, reference, other_model, pool):
    """A weight push without a pause (the sync trainer's, or validation's) must not swap weights under a running
    generation: its tokens are all the old model's, and the push lands after it. A push without global_steps
    (validation's update_weights()) keeps the reported version, as vLLM's set_global_steps does."""
    release = threading.Event()
    server.load_weights(dict(reference.named_parameters()), global_steps=1)
    with hold_forward(server.model, HELD_AT, until=release.is_set) as reached:
        running = pool.submit(server.generate, "running", PROMPT, {**GREEDY, "max_tokens": BUDGET})
        assert reached.wait(60)
        push = pool.submit(server.load_weights, dict(other_model.named_parameters()), None)
        assert still_parked(push)
        release.set()
        output = running.result(timeout=60)
        push.result(timeout=60)
    assert output.stop_reason == "completed" and len(output.token_ids) == BUDGET
    assert_log_probs(output.log_probs, reference, PROMPT, output.token_ids, temperature=1.0)
    after = server.generate("after", PROMPT, {**GREEDY, "max_tokens": 8})
    assert_log_probs(after.log_probs, other_model, PROMPT, after.token_ids, temperature=1.0)
    assert after.extra_fields["global_steps"] == 1


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_actor_takes_an_abort_and_a_resume_while_generate_calls_hold_its_threads(local_ray, tiny_model_dir):
    """The actor HFReplica launches: abort_all_requests must run while a long generate runs (a one-thread actor
    would queue it behind the generation), and resume_generation while more generate calls than the actor has
    generate threads are parked at the gate (in the same group it would never be scheduled: a deadlock)."""
    server = start_server_actor("hf_server_async_test", tiny_model_dir, prompt_length=64, response_length=BUDGET)
    ray.get(server.generate.remote("warm", PROMPT, {**GREEDY, "max_tokens": 2}), timeout=120)

    long = server.generate.remote("long", PROMPT, {**GREEDY, "max_tokens": 2000})  # ~3 s on one core
    assert not ray.wait([long], timeout=0.3)[0], "2000 tokens finished in 0.3 s: the abort would come too late"
    assert ray.get(server.abort_all_requests.remote(), timeout=60) == {"aborted_count": 1, "request_ids": ["long"]}
    partial = ray.get(long, timeout=60)
    assert partial.stop_reason == "aborted" and 0 < len(partial.token_ids) < 2000

    short = {**GREEDY, "max_tokens": 4}
    parked = [server.generate.remote(f"parked{i}", PROMPT, short) for i in range(GENERATE_THREADS + 2)]
    assert ray.wait(parked, num_returns=len(parked), timeout=PARKED)[0] == []
    ray.get(server.resume_generation.remote(), timeout=60)
    outputs = ray.get(parked, timeout=120)
    assert all(output.stop_reason == "completed" and len(output.token_ids) == 4 for output in outputs)
    ray.kill(server)
