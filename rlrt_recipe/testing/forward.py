"""Teacher-forced log-probs from one transformers forward: the reference the engine's numbers are checked against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


@torch.no_grad()
def response_log_softmax(model: Any, prompt_ids: Sequence[int], response_ids: Sequence[int],
                         temperature: float = 1.0, **model_inputs: Any) -> torch.Tensor:
    """log softmax(logits / T) over the vocabulary at each position that predicts a response token, given the prompt
    and y_<t  [R, V]. ``model_inputs`` go to the forward too (e.g. a VL model's ``pixel_values``,
    ``image_grid_thw``, ``mm_token_type_ids``)."""
    prompt, response = [int(t) for t in prompt_ids], [int(t) for t in response_ids]
    ids = torch.tensor([prompt + response])  # [1, P + R]
    logits = model(input_ids=ids, **model_inputs).logits[0, len(prompt) - 1 : -1]  # [R, V]: t predicts t + 1
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def response_log_probs(model: Any, prompt_ids: Sequence[int], response_ids: Sequence[int],
                       temperature: float = 1.0, **model_inputs: Any) -> torch.Tensor:
    """log softmax(logits / T)[y_t] of each response token y_t given the prompt and y_<t, as verl's actor computes
    it (temperature-scaled, unfiltered)  [R]."""
    log_probs = response_log_softmax(model, prompt_ids, response_ids, temperature, **model_inputs)  # [R, V]
    return log_probs.gather(-1, torch.tensor([int(t) for t in response_ids])[:, None])[:, 0]  # [R]
