"""Teacher-forced log-probs from one transformers forward: the reference the engine's numbers are checked against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


@torch.no_grad()
def response_log_probs(model: Any, prompt_ids: Sequence[int], response_ids: Sequence[int],
                       temperature: float = 1.0, **model_inputs: Any) -> torch.Tensor:
    """log softmax(logits / T)[y_t] of each response token y_t given the prompt and y_<t, as verl's actor computes
    it (temperature-scaled, unfiltered)  [R]. ``model_inputs`` go to the forward too (e.g. a VL model's
    ``pixel_values``, ``image_grid_thw``, ``mm_token_type_ids``)."""
    prompt, response = [int(t) for t in prompt_ids], [int(t) for t in response_ids]
    ids = torch.tensor([prompt + response])  # [1, P + R]
    logits = model(input_ids=ids, **model_inputs).logits[0, len(prompt) - 1 : -1]  # [R, V]: t predicts t + 1
    logits = logits.float() / temperature  # [R, V]
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(response)[:, None])[:, 0]  # [R]
