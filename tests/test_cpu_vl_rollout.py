"""The hf rollout server on image prompts (rlrt_recipe/cpu/server.py, Qwen3-VL): what it samples and the log-probs
it returns must be what verl's actor recomputes from the stored row, and it must never sample a vision token.

Prompts are built as verl's agent loop builds them: the dataset class's images (already resized), verl's Qwen-VL
token builder (processor chat template, ``<|image_pad|>`` expanded). The reference is one transformers forward of
prompt ‖ response with the image processor's pixels and ``mm_token_type_ids``, as test_vl_engine.py checks the
actor's forward against.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen3VLForConditionalGeneration
from verl.utils.tokenizer import hf_processor, hf_tokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset
from rlrt_recipe.cpu.server import HFRolloutServer
from rlrt_recipe.testing.forward import response_log_probs

SAMPLING = {"top_p": 1.0, "top_k": -1, "logprobs": True}
TOLERANCE = 1e-5


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def server(tiny_vl_model_dir) -> HFRolloutServer:
    return HFRolloutServer(tiny_vl_model_dir, prompt_length=128, response_length=16)


@pytest.fixture(scope="module")
def model(tiny_vl_model_dir) -> Qwen3VLForConditionalGeneration:
    return Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompts(tiny_vl_model_dir) -> dict[str, tuple[list[int], list[Image.Image] | None]]:
    """(prompt ids, images) as the agent loop sends them: one image, two images (one non-square), text only."""
    processor = hf_processor(tiny_vl_model_dir)
    builder = create_continuous_token_builder(hf_tokenizer(tiny_vl_model_dir), hf_model_type="qwen3_vl",
                                              chat_template_kwargs={}, processor=processor)
    image = {"type": "image"}
    contents = {
        "one_image": [dict(image, image=noise_image(64, 64, 0)), {"type": "text", "text": "How many circles?"}],
        "two_images": [dict(image, image=noise_image(96, 64, 1)), dict(image, image=noise_image(64, 64, 2)),
                       {"type": "text", "text": "Same?"}],
        "text_only": "What is 2 + 3?",
    }
    prompts = {}
    for name, content in contents.items():
        messages = [{"role": "user", "content": content}]
        images, _, _ = TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, None)
        prompts[name] = (builder.build_initial_tokens(messages, images=images), images)
    return prompts


def pixel_inputs(server: HFRolloutServer, prompt: list[int], response: list[int],
                 images: list[Image.Image] | None, **mm_processor_kwargs) -> dict[str, torch.Tensor]:
    """A transformers forward's vision inputs for prompt ‖ response (none for a text prompt)."""
    if not images:
        return {}
    pixels = server.processor.image_processor(images=images, return_tensors="pt", **mm_processor_kwargs)
    ids = torch.tensor([prompt + response])  # [1, P + R]
    return {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"],
            "mm_token_type_ids": (ids == server.image_token_id).long()}


def test_a_vision_language_config_loads_the_image_text_model_and_its_processor(server, model):
    """AutoModelForCausalLM refuses Qwen3VLConfig; the server must pick the class verl's actor uses and know the
    four vision special tokens."""
    assert type(server.model) is Qwen3VLForConditionalGeneration
    assert type(server.processor).__name__ == "Qwen3VLProcessor"
    config = model.config
    assert sorted(server.vision_token_ids) == sorted(
        [config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("name", ["one_image", "two_images", "text_only"])
def test_sampled_log_probs_equal_a_transformers_forward_with_the_same_pixels(server, model, prompts, name,
                                                                             temperature):
    """The rollout's per-token log-probs are log_softmax(logits / T) of a forward of prompt ‖ response with the
    image processor's pixels, what verl's actor recomputes as old_log_probs from the stored row."""
    prompt, images = prompts[name]
    torch.manual_seed(0)
    output = server.generate("a", prompt, {"temperature": temperature, **SAMPLING}, image_data=images)
    assert len(output.token_ids) == len(output.log_probs) == 16
    expected = response_log_probs(model, prompt, output.token_ids, temperature,
                                  **pixel_inputs(server, prompt, output.token_ids, images))
    torch.testing.assert_close(torch.tensor(output.log_probs), expected, atol=TOLERANCE, rtol=0)


def test_the_pixels_matter_and_mm_processor_kwargs_reach_the_image_processor(server, model, prompts):
    """Not vacuous: greedy decoding follows the argmax of the forward with these pixels, and another image (or the
    same one unnormalised through ``mm_processor_kwargs``) changes the log-probs far beyond the tolerance."""
    prompt, images = prompts["one_image"]
    greedy = {"temperature": 0, **SAMPLING}
    output = server.generate("b", prompt, greedy, image_data=images)
    ids = torch.tensor([prompt + output.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, **pixel_inputs(server, prompt, output.token_ids, images)).logits
    logits[..., server.vision_token_ids] = -torch.inf  # never sampled, greedy included
    assert logits[0, len(prompt) - 1 : -1].argmax(-1).tolist() == output.token_ids
    other = server.generate("c", prompt, greedy, image_data=[noise_image(64, 64, 99)])
    assert other.token_ids != output.token_ids or not np.allclose(other.log_probs, output.log_probs, atol=1e-3)
    raw = server.generate("d", prompt, greedy, image_data=images, mm_processor_kwargs={"do_normalize": False})
    expected = response_log_probs(model, prompt, raw.token_ids, 1.0,
                                  **pixel_inputs(server, prompt, raw.token_ids, images, do_normalize=False))
    torch.testing.assert_close(torch.tensor(raw.log_probs), expected, atol=TOLERANCE, rtol=0)
    assert raw.token_ids != output.token_ids or not np.allclose(raw.log_probs, output.log_probs, atol=1e-3)


def test_no_vision_token_is_ever_sampled(server, model, prompts):
    """A random policy puts mass on <|image_pad|> and friends; one sampled would make verl's post-processing fail
    on the row (multimodal.md §4.3). 48 responses of 16 tokens contain none, although the raw distribution (whose
    log-probs the server still reports) would have put several there."""
    vision = set(server.vision_token_ids)
    expected_without_suppression = 0.0
    for index in range(48):
        prompt, images = prompts[("one_image", "two_images", "text_only")[index % 3]]
        torch.manual_seed(index)
        output = server.generate(str(index), prompt, {"temperature": 1.0, **SAMPLING}, image_data=images)
        assert not vision & set(output.token_ids), f"response {index} has a vision token: {output.token_ids}"
        ids = torch.tensor([prompt + output.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids, **pixel_inputs(server, prompt, output.token_ids, images)).logits
        probs = torch.softmax(logits[0, len(prompt) - 1 : -1], dim=-1)  # [R, V]
        expected_without_suppression += probs[:, sorted(vision)].sum().item()
    assert expected_without_suppression > 3  # P(no vision token unsuppressed) < e^-3


@pytest.mark.parametrize("media", ["video_data", "audio_data"])
def test_video_and_audio_are_refused(server, prompts, media):
    """The server has no video or audio path: a request with either fails with the reason, it is not ignored."""
    prompt, _ = prompts["one_image"]
    with pytest.raises(ValueError, match="text and image prompts only"):
        server.generate("e", prompt, {"temperature": 0}, **{media: [object()]})


def test_a_text_model_refuses_images(tiny_model_dir):
    """A text model loads as before (no processor, nothing suppressed) and refuses image data by name."""
    text_server = HFRolloutServer(tiny_model_dir, prompt_length=64, response_length=16)
    assert text_server.vision_token_ids == [] and text_server.processor is None
    with pytest.raises(ValueError, match="Qwen2ForCausalLM is a text model: it cannot take image prompts"):
        text_server.generate("f", [1, 2, 3], {"temperature": 0}, image_data=[noise_image(64, 64, 0)])
