"""The ``hf`` rollout server: one transformers model answering verl's token-in/token-out ``generate``.

verl has no base class for a rollout server; the agent loop calls it through ``LLMServerClient.generate``
(``verl/workers/rollout/llm_server.py:150``) and the trainer drives its lifecycle through
``RolloutReplica`` (``verl/workers/rollout/replica.py``). This module is what Ray unpickles in the server
process, so it imports nothing of verl's trainer; it generates one request at a time on one torch thread.

Partial rollouts (the V1 ``colocate_async``/``separate_async`` trainers), with the semantics of verl's vLLM server
(``verl/workers/rollout/vllm_rollout/vllm_async_server.py``):

* ``abort_all_requests(reject_request)`` closes the gate and stops every admitted request between two tokens; each
  returns the tokens (and log-probs) generated so far with ``stop_reason="aborted"``, an empty list if it was still
  waiting for the model. The call returns once all of them have (``{"aborted_count", "request_ids"}``, L931-1008),
  so ``load_weights`` right after it never races a generation.
* While the gate is closed, a new ``generate`` waits until ``resume_generation`` (L1017-1044); with
  ``reject_request=True`` it returns at once, empty and ``"aborted"``, so verl's ``FullyAsyncLLMServerClient``
  retries it on another server (``llm_server.py:342-345``).
* ``extra_fields["global_steps"]`` is the weights version the returned tokens were generated with: the
  ``global_steps`` of the last ``load_weights`` that gave one (``vllm_rollout.py:249-250``). The client resumes an
  aborted request with prompt + tokens so far and the rest of the budget (``llm_server.py:289-345``) and records the
  first and last version as the trajectory's min/max_global_steps.

As a Ray actor the server is threaded: ``generate`` calls run in the default concurrency group and the lifecycle calls
in their own group (``CONCURRENCY_GROUPS``), so ``abort_all_requests`` and ``resume_generation`` run while every
generate thread is busy or parked at the gate.

Image prompts (Qwen3-VL): a config transformers maps to an image-text-to-text model (the check verl's actor makes,
``verl/utils/model.py:710``) is loaded with ``AutoModelForImageTextToText`` and its processor; the agent loop's
``image_data`` (PIL images, already resized by the dataset class) become ``pixel_values``/``image_grid_thw``
through the processor's image processor, as verl's post-processing computes the actor's inputs
(``agent_loop.py:868-918``). The model's vision special tokens are never sampled: a random policy samples
``<|image_pad|>``, and verl's position-id and embedding code then fails on the row (a stray image token without an
image). Log-probs still come from the raw logits, the quantity verl's actor computes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
from verl.workers.rollout.replica import CONTROL_METHOD_CONCURRENCY, TokenOutput

from rlrt_recipe.cpu.vision import use_real_video_processor

#: Sampling keys the agent loop sends (``verl/experimental/agent_loop/agent_loop.py:590``) and we honour.
_MAX_TOKEN_KEYS = ("max_tokens", "max_new_tokens")
#: Config attributes of a vision-language model's special tokens that only the processor may place.
_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
#: Ray concurrency group of the lifecycle calls. They must not queue behind ``generate`` calls parked at a closed
#: gate: those wait for ``resume_generation``, which would then never be scheduled.
CONTROL_GROUP = "control"
#: What ``ray.remote(...)`` must declare for this class (Ray refuses a method tagged with an undeclared group).
CONCURRENCY_GROUPS = {CONTROL_GROUP: CONTROL_METHOD_CONCURRENCY}


class _StopWhenPaused(StoppingCriteria):
    """Ends ``model.generate`` after the token in progress once ``abort_all_requests`` has closed the gate."""

    def __init__(self, paused: threading.Event) -> None:
        self.paused = paused

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.paused.is_set(), dtype=torch.bool)  # [B]


class HFRolloutServer:
    """Generates with ``model.generate`` (fp32, batch of one), stops at EOS, loads the actor's weights.

    ``temperature == 0`` is greedy decoding (verl's validation setting); otherwise multinomial sampling
    with ``top_p`` and ``top_k`` (``-1`` = off). Log-probs, when asked for, are ``log_softmax(logits / T)``
    of the chosen token, the same quantity verl's actor computes for ``old_log_probs`` (T = 1 if greedy).
    Thread-safe: one generation or weight load holds the model at a time; ``abort_all_requests`` and
    ``resume_generation`` pause and resume generation from any thread (module docstring).
    """

    def __init__(
        self,
        model_path: str,
        *,
        prompt_length: int,
        response_length: int,
        attn_implementation: str = "sdpa",
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> None:
        # Ray gives this actor no CPU (num_cpus=0): the trainer ranks own the cores.
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.is_vision_language = type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
        model_class = AutoModelForImageTextToText if self.is_vision_language else AutoModelForCausalLM
        self.model = model_class.from_pretrained(
            model_path,
            dtype=torch.float32,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
        ).eval()
        self.processor = None
        self.image_token_id: int | None = None
        self.vision_token_ids: list[int] = []
        if self.is_vision_language:
            # This process runs with verl's plug-ins off (rollout.py _SERVER_ENV): the fix must be applied here.
            use_real_video_processor()
            self.processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
            self.image_token_id = config.image_token_id
            self.vision_token_ids = [getattr(config, key) for key in _VISION_TOKEN_KEYS
                                     if getattr(config, key, None) is not None]
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            raise ValueError(f"{model_path}: generation_config.json has no eos_token_id; the rollout cannot stop")
        self.eos_token_ids: list[int] = [eos] if isinstance(eos, int) else list(eos)
        self.prompt_length = prompt_length
        self.response_length = response_length
        self.global_steps: int | None = None

        # The gate: set by abort_all_requests, cleared by resume_generation; read between tokens.
        self._paused = threading.Event()
        self._rejecting = False  # requests behind the closed gate are rejected, not parked
        self._in_flight: list[str] = []  # admitted requests, generating or waiting for the model
        self._model_busy = False  # a generation or a weight load holds the model
        self._state = threading.Condition()  # guards the three fields above and the gate's transitions

    @property
    def paused(self) -> bool:
        """Whether the gate is closed (between ``abort_all_requests`` and ``resume_generation``)."""
        return self._paused.is_set()

    def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: Any = None,
        video_data: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        """Token ids after ``prompt_ids`` up to and including the first EOS (or the token budget), or the tokens
        generated before an ``abort_all_requests`` with ``stop_reason="aborted"``."""
        if video_data is not None or kwargs.get("audio_data") is not None:
            raise ValueError(
                "the hf rollout serves text and image prompts only; use rollout.name=vllm for video or audio"
            )
        if image_data is not None and not self.is_vision_language:
            raise ValueError(f"{type(self.model).__name__} is a text model: it cannot take image prompts")
        repetition_penalty = float(sampling_params.get("repetition_penalty", 1.0))
        if repetition_penalty != 1.0:
            raise ValueError(f"the hf rollout supports repetition_penalty=1.0 only, got {repetition_penalty}")

        with_log_probs = bool(sampling_params.get("logprobs"))
        if not self._admit(request_id):
            return self._empty_aborted_output(with_log_probs)
        try:
            with self._model_turn(abortable=True) as granted:
                if not granted:  # aborted while waiting for the model
                    return self._empty_aborted_output(with_log_probs)
                return self._generate(prompt_ids, sampling_params, image_data, kwargs.get("mm_processor_kwargs"))
        finally:
            self._leave(request_id)

    def _generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], image_data: Any,
                  mm_processor_kwargs: dict[str, Any] | None) -> TokenOutput:
        """One ``model.generate`` call; the caller holds the model."""
        temperature = float(sampling_params.get("temperature", 1.0))
        greedy = temperature == 0.0
        sampling = {} if greedy else {
            "temperature": temperature,
            "top_p": float(sampling_params.get("top_p", 1.0)),
            "top_k": max(int(sampling_params.get("top_k", -1)), 0),  # transformers: 0 = off, verl: -1 = off
        }
        max_new_tokens = self._max_new_tokens(sampling_params, len(prompt_ids))
        generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=not greedy,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.eos_token_ids[0],
            return_dict_in_generate=True,
            output_logits=True,
            suppress_tokens=self.vision_token_ids or None,  # sampling only: output.logits stay raw
            **sampling,
        )
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)  # [1, P]
        image_inputs = self._image_inputs(input_ids, image_data, mm_processor_kwargs)
        with torch.no_grad():
            output = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), generation_config=generation_config,
                stopping_criteria=StoppingCriteriaList([_StopWhenPaused(self._paused)]), **image_inputs,
            )
        token_ids = output.sequences[0, len(prompt_ids) :].tolist()  # [R]; ends at the first EOS if any
        # Judged from the tokens, not the gate: a request that reached EOS or its budget on the token where the
        # gate closed is complete.
        finished = len(token_ids) == max_new_tokens or token_ids[-1] in self.eos_token_ids

        log_probs = None
        if sampling_params.get("logprobs"):
            logits = torch.cat(output.logits, dim=0).float()  # [R, V], raw (unprocessed) logits
            scaled = logits if greedy else logits / temperature  # [R, V]
            chosen = torch.tensor(token_ids).unsqueeze(-1)  # [R, 1]
            log_probs = torch.log_softmax(scaled, dim=-1).gather(-1, chosen).squeeze(-1).tolist()  # [R]
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed" if finished else "aborted",
            extra_fields={"global_steps": self.global_steps},  # no load_weights while the model is held
        )

    def _admit(self, request_id: str) -> bool:
        """Pass the gate: at once if open, after ``resume_generation`` if closed; False if it rejects."""
        with self._state:
            while self._paused.is_set():
                if self._rejecting:
                    return False
                self._state.wait()
            self._in_flight.append(request_id)
            return True

    def _leave(self, request_id: str) -> None:
        with self._state:
            self._in_flight.remove(request_id)
            self._state.notify_all()

    @contextmanager
    def _model_turn(self, abortable: bool) -> Iterator[bool]:
        """Hold the model for one generation or weight load. An abortable wait gives up (yields False) when the
        gate closes, as the engine drops a queued request on abort."""
        with self._state:
            while self._model_busy and not (abortable and self._paused.is_set()):
                self._state.wait()
            granted = not (abortable and self._paused.is_set())
            if granted:
                self._model_busy = True
        try:
            yield granted
        finally:
            if granted:
                with self._state:
                    self._model_busy = False
                    self._state.notify_all()

    def _empty_aborted_output(self, with_log_probs: bool) -> TokenOutput:
        """What a request rejected at the gate or aborted before its first token returns."""
        return TokenOutput(
            token_ids=[],
            log_probs=[] if with_log_probs else None,
            stop_reason="aborted",
            extra_fields={"global_steps": self.global_steps},
        )

    def _image_inputs(self, input_ids: torch.Tensor, images: list[Any] | None,
                      mm_processor_kwargs: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        """``pixel_values`` [N, C·T·p·p], ``image_grid_thw`` [n, 3] and ``mm_token_type_ids`` [1, P] (1 at image
        tokens; transformers needs it with pixels for M-RoPE) for ``images``; nothing for a text prompt."""
        if not images:
            return {}
        pixels = self.processor.image_processor(images=images, return_tensors="pt", **(mm_processor_kwargs or {}))
        return {
            "pixel_values": pixels["pixel_values"],
            "image_grid_thw": pixels["image_grid_thw"],
            "mm_token_type_ids": (input_ids == self.image_token_id).long(),
        }

    def _max_new_tokens(self, sampling_params: dict[str, Any], num_prompt_tokens: int) -> int:
        """The request's own budget if it sets one, else what still fits in response_length; at least 1."""
        for key in _MAX_TOKEN_KEYS:
            if key in sampling_params:
                return max(1, int(sampling_params[key]))
        room = self.prompt_length + self.response_length - num_prompt_tokens
        return max(1, min(self.response_length, room))

    @ray.method(concurrency_group=CONTROL_GROUP)
    def load_weights(self, state_dict: dict[str, torch.Tensor], global_steps: int | None = None) -> None:
        """Replace every parameter with the actor's full (unsharded) tensor of the same HF name, after the
        running generation if any (the async trainers pause first, so there is none); ``global_steps``, when
        given, becomes the version reported with the tokens generated from now on (a sync without one, as
        validation's reward pass makes, keeps the version, as vLLM's ``set_global_steps`` does)."""
        expected = {name for name, _ in self.model.named_parameters()}  # tied weights listed once
        missing = sorted(expected - state_dict.keys())
        unknown = sorted(state_dict.keys() - {name for name, _ in self.model.state_dict().items()})
        if missing or unknown:
            raise ValueError(
                f"actor weights do not match the rollout model: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(unknown)} unknown (e.g. {unknown[:3]}). "
                "The actor and the rollout must load the same model path."
            )
        with self._model_turn(abortable=False):
            self.model.load_state_dict(state_dict, strict=False)
            if global_steps is not None:
                self.global_steps = global_steps

    # Lifecycle calls verl's replica and trainer make on every server (replica.py, RolloutReplica.*).
    @ray.method(concurrency_group=CONTROL_GROUP)
    def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        """Close the gate and stop every admitted request; return once all have returned. ``reject_request``:
        requests behind the gate (arriving, or parked by an earlier abort: vLLM leaves those parked) return empty and
        ``"aborted"`` instead of waiting for ``resume_generation``; every abort sets it anew, as vLLM's does."""
        with self._state:
            self._rejecting = reject_request
            self._paused.set()
            aborted = list(self._in_flight)
            self._state.notify_all()  # requests waiting for the model give up; parked ones re-read _rejecting
            while self._in_flight:
                self._state.wait()
        return {"aborted_count": len(aborted), "request_ids": aborted}

    @ray.method(concurrency_group=CONTROL_GROUP)
    def resume_generation(self) -> None:
        """Open the gate: parked requests and new ones generate, with the weights loaded meanwhile."""
        with self._state:
            self._rejecting = False
            self._paused.clear()
            self._state.notify_all()

    # A transformers model keeps no KV cache between requests and holds its weights in host memory.
    @ray.method(concurrency_group=CONTROL_GROUP)
    def wake_up(self) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def sleep(self) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def clear_kv_cache(self) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def release_kv_cache(self) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def resume_kv_cache(self) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def start_profile(self, **kwargs: Any) -> None: ...

    @ray.method(concurrency_group=CONTROL_GROUP)
    def stop_profile(self) -> None: ...
