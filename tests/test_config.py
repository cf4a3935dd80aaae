"""The `rlrt:` section: every validation error names its key and value; null fields resolve per estimator."""

import pytest
from omegaconf import OmegaConf

from rlrt_recipe.config import RlrtConfig, load_rlrt_config
from rlrt_recipe.privileged import DEFAULT_TEMPLATES

LENGTHS = dict(max_prompt_length=512, max_response_length=2048)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("correct_threshold", float("nan"), "rlrt.correct_threshold must be a finite number, got nan"),
        ("correct_threshold", "high", "rlrt.correct_threshold must be a finite number, got 'high'"),
        ("direction", 0, "rlrt.direction must be one of 1, -1 or null, got 0"),
        ("gate", "wrong", "rlrt.gate must be one of all, correct, negative, mixed or null, got 'wrong'"),
        ("eps_w", 1.5, "rlrt.eps_w must be in (0, 1], got 1.5"),
        ("eps_w", 0.0, "rlrt.eps_w must be in (0, 1], got 0.0"),
        ("backbone_kind", "chat", "rlrt.backbone_kind must be one of base, instruct, thinking, got 'chat'"),
        ("lambda_schedule", "cosine",
         "rlrt.lambda_schedule must be one of constant, linear_decay, warmup_decay or null, got 'cosine'"),
        ("correct_box", [1.1, 1.2], "rlrt.correct_box must be [low, high] with 0 < low <= 1 <= high, got [1.1, 1.2]"),
        ("incorrect_box", 0.9, "rlrt.incorrect_box must be [low, high]"),
        ("additive", "kl", "rlrt.additive must be one of delta, antisd or null, got 'kl'"),
        ("span", "reasoning", "rlrt.span must be one of all, thinking, answer or null, got 'reasoning'"),
        ("span_tags", ["<think>", ""], "rlrt.span_tags must be [open, close] tag strings with a non-empty close tag"),
        ("span_tags", "<think>", "rlrt.span_tags must be [open, close] tag strings"),
        ("confidence_min", 1.5, "rlrt.confidence_min must be in [0, 1] or null, got 1.5"),
        ("confidence_min", "low", "rlrt.confidence_min must be in [0, 1] or null, got 'low'"),
        ("lambda_warmup_steps", 0, "rlrt.lambda_warmup_steps must be an integer >= 1, got 0"),
        ("lambda_0", -0.1, "rlrt.lambda_0 must be in [0, 1], got -0.1"),
        ("lambda_decay_steps", 0, "rlrt.lambda_decay_steps must be an integer >= 1, got 0"),
        ("lambda_decay_steps", 2.5, "rlrt.lambda_decay_steps must be an integer >= 1, got 2.5"),
        ("distill_adv_coef", -1.0, "rlrt.distill_adv_coef must be a finite number >= 0, got -1.0"),
        ("distill_loss_coef", float("inf"), "rlrt.distill_loss_coef must be a finite number >= 0, got inf"),
        ("distill_kl_type", "js", "rlrt.distill_kl_type must be one of"),
        ("teacher_sync_steps", 0, "rlrt.teacher_sync_steps must be an integer >= 1, got 0"),
        ("distill_loss_max_clamp", 0.0, "rlrt.distill_loss_max_clamp must be a finite number > 0 or null, got 0.0"),
        ("eb_alpha", -0.1, "rlrt.eb_alpha must be a finite number >= 0, got -0.1"),
        ("eb_alpha", float("inf"), "rlrt.eb_alpha must be a finite number >= 0, got inf"),
        ("eb_kappa", 1.0, "rlrt.eb_kappa must be a finite number > 1, got 1.0"),
        ("eb_kappa", None, "rlrt.eb_kappa must be a finite number > 1, got None"),
        ("teacher", "ema", "rlrt.teacher must be one of live, frozen, snapshot, got 'ema'"),
        ("distill_topk", 0, "rlrt.distill_topk must be an integer >= 1, got 0"),
        ("distill_jsd_alpha", 1.5, "rlrt.distill_jsd_alpha must be in [0, 1], got 1.5"),
        ("distill_is_cap", 0.0, "rlrt.distill_is_cap must be a finite number > 0, got 0.0"),
        ("srpo_beta", -1.0, "rlrt.srpo_beta must be a finite number >= 0, got -1.0"),
        ("context", "hint", "rlrt.context must be one of answer, solution, rollout or null, got 'hint'"),
        ("max_privileged_prompt_length", 0, "rlrt.max_privileged_prompt_length must be an integer >= 1, got 0"),
        ("sibling_choice", "longest", "rlrt.sibling_choice must be one of random, shortest, got 'longest'"),
        ("sibling_fallback", "skip", "rlrt.sibling_fallback must be one of answer, solution, none, got 'skip'"),
        ("sibling_strip_thinking", "yes", "rlrt.sibling_strip_thinking must be true or false, got 'yes'"),
        ("score_all_rows", 1, "rlrt.score_all_rows must be true or false, got 1"),
        ("teacher_chat_template_kwargs", "enable_thinking=true",
         "rlrt.teacher_chat_template_kwargs must be a mapping of chat-template keyword arguments (e.g. "
         "{enable_thinking: true}) or null, got 'enable_thinking=true'"),
        ("teacher_chat_template_kwargs", ["enable_thinking"], "rlrt.teacher_chat_template_kwargs must be a mapping"),
        ("teacher_chat_template_kwargs", {1: True}, "rlrt.teacher_chat_template_kwargs must be a mapping"),
        ("privileged_templates", {"answer": "{answer} only"}, "rlrt.privileged_templates.answer"),
        ("privileged_templates", {"hint": "{question}"}, "rlrt.privileged_templates.hint"),
        ("privileged_templates", {"rollout": "{question} {rollout} {x}"}, "rlrt.privileged_templates.rollout"),
    ],
)
def test_invalid_value_names_key_and_value(key, value, message):
    with pytest.raises(ValueError) as err:
        RlrtConfig.from_section({key: value})
    assert message in str(err.value)


def test_unknown_key_is_named_with_the_allowed_ones():
    """There is no rlrt.method key: the estimator is algorithm.adv_estimator."""
    with pytest.raises(ValueError, match=r"unknown key\(s\) rlrt\.method; allowed: .*eps_w"):
        RlrtConfig.from_section({"method": "rlrt"})


def test_weight_settings_rejected_for_estimators_that_ignore_them():
    with pytest.raises(ValueError, match=r"rlrt\.eps_w only applies to .*adv_estimator='opsd'"):
        RlrtConfig(eps_w=0.5).resolved("opsd", **LENGTHS)
    with pytest.raises(ValueError, match=r"rlrt\.eps_w only applies to .*adv_estimator='grpo_eb'"):
        RlrtConfig(eps_w=0.5).resolved("grpo_eb", **LENGTHS)


@pytest.mark.parametrize("key, value", [("eb_alpha", 0.2), ("eb_kappa", 3.0)])
@pytest.mark.parametrize("estimator", ["grpo", "rlrt", "grpo_opsd"])
def test_entropy_bonus_settings_rejected_for_other_estimators(estimator, key, value):
    """An eb_* value off its default would be silently ignored outside grpo_eb; at its default (the primary
    recipe lists every key) it passes, and grpo_eb takes it."""
    with pytest.raises(ValueError, match=rf"rlrt\.{key} only applies to .*'grpo_eb'.*adv_estimator='{estimator}'"):
        RlrtConfig.from_section({key: value}).resolved(estimator, **LENGTHS)
    RlrtConfig().resolved(estimator, **LENGTHS)
    assert getattr(RlrtConfig.from_section({key: value}).resolved("grpo_eb", **LENGTHS), key) == value


@pytest.mark.parametrize(
    "estimator, overrides, expected",
    [
        ("rlsd", {}, dict(direction=1, gate="all", eps_w=0.2, lambda_schedule="linear_decay", lambda_0=0.5,
                          lambda_decay_steps=50, max_privileged_prompt_length=1024)),
        ("rlrt", {}, dict(direction=-1, gate="correct", eps_w=1.0, lambda_schedule="constant", lambda_0=0.5,
                          lambda_decay_steps=None, max_privileged_prompt_length=512 + 2048 + 256)),
        ("rlrt", {"backbone_kind": "instruct"}, dict(eps_w=0.5)),
        ("rlrt", {"backbone_kind": "thinking"}, dict(eps_w=0.2)),
        ("rlrt", {"gate": "all"}, dict(gate="all", direction=-1)),  # RLRT-all ablation
        ("rlrt", {"direction": 1}, dict(direction=1, gate="correct")),  # teacher-up-on-correct ablation
        ("rlrt", {"eps_w": 0.3, "backbone_kind": "thinking"}, dict(eps_w=0.3)),  # explicit beats backbone
        ("rlrt", {"context": "answer"}, dict(max_privileged_prompt_length=1024)),
        ("opsd", {}, dict(direction=None, eps_w=None, max_privileged_prompt_length=1024)),
        ("grpo_opsd", {}, dict(distill_adv_coef=0.1, max_privileged_prompt_length=1024)),
        ("grpo", {"distill_loss_coef": 0.1}, dict(distill_loss_coef=0.1, max_privileged_prompt_length=1024)),
        ("grpo_eb", {}, dict(eb_alpha=0.4, eb_kappa=2.0, direction=None, eps_w=None)),  # Cheng et al.'s values
        ("rlsd", {"max_privileged_prompt_length": 4000}, dict(max_privileged_prompt_length=4000)),
    ],
)
def test_member_resolution(estimator, overrides, expected):
    resolved = RlrtConfig.from_section(overrides).resolved(estimator, **LENGTHS)
    for key, value in expected.items():
        assert getattr(resolved, key) == value, key


def test_topk_settings_apply_to_the_sdpo_and_srpo_losses_only():
    """SDPO's and SRPO's settings are refused where they would be ignored; the two losses run on the grpo
    estimator, with a sibling rollout as the demonstration."""
    with pytest.raises(ValueError, match=r"rlrt\.srpo_beta only applies to .*loss_mode in \('sdpo', 'srpo'\), got loss_mode='vanilla'"):
        RlrtConfig(srpo_beta=0.5).resolved("grpo", **LENGTHS)
    assert RlrtConfig(srpo_beta=0.5, distill_topk=20).resolved("grpo", loss_mode="srpo", **LENGTHS).srpo_beta == 0.5
    with pytest.raises(ValueError, match="set algorithm.adv_estimator=grpo"):
        RlrtConfig().resolved("rlrt", loss_mode="sdpo", **LENGTHS)
    for loss_mode in ("sdpo", "srpo"):
        resolved = RlrtConfig().resolved("grpo", loss_mode=loss_mode, **LENGTHS)
        assert (resolved.context, resolved.max_privileged_prompt_length) == ("rollout", 512 + 2048 + 256)
        assert resolved.needs_teacher("grpo", loss_mode)


def test_family_keys_resolve_and_refuse_what_they_would_ignore():
    """CAST's two boxes replace ε_w (both or neither, never with eps_w); the warm-up length goes with warmup_decay;
    the additive term applies to rlrt, rlsd and grpo_opsd (whose default it is: delta)."""
    cast = RlrtConfig.from_section({"correct_box": [0.8, 1.05], "incorrect_box": [0.95, 1.2], "gate": "mixed"})
    resolved = cast.resolved("rlsd", **LENGTHS)
    assert (resolved.eps_w, resolved.correct_box, resolved.gate) == (None, [0.8, 1.05], "mixed")
    assert cast.resolved("rlrt", **LENGTHS).eps_w is None
    with pytest.raises(ValueError, match="go together"):
        RlrtConfig(correct_box=[0.8, 1.05])
    with pytest.raises(ValueError, match="set one of them"):
        RlrtConfig(correct_box=[0.8, 1.05], incorrect_box=[0.95, 1.2], eps_w=0.2)
    with pytest.raises(ValueError, match=r"rlrt\.correct_box only applies"):
        RlrtConfig(correct_box=[0.8, 1.05], incorrect_box=[0.95, 1.2]).resolved("grpo_opsd", **LENGTHS)
    warm = RlrtConfig(lambda_schedule="warmup_decay", lambda_warmup_steps=2, lambda_decay_steps=4).resolved("rlsd", **LENGTHS)
    assert [warm.lambda_at(k) for k in (1, 2, 3, 4, 7)] == [0.0, 0.25, 0.5, 0.375, 0.0]
    with pytest.raises(ValueError, match="lambda_warmup_steps goes with"):
        RlrtConfig(lambda_warmup_steps=3)
    assert RlrtConfig().resolved("grpo_opsd", **LENGTHS).additive == "delta"
    assert RlrtConfig(additive="antisd").resolved("rlsd", **LENGTHS).additive == "antisd"
    assert RlrtConfig().resolved("rlsd", **LENGTHS).additive is None
    with pytest.raises(ValueError, match=r"rlrt\.additive only applies"):
        RlrtConfig(additive="antisd").resolved("opsd", **LENGTHS)


def test_span_and_confidence_keys_resolve_and_refuse_what_they_would_ignore():
    """rlrt.span applies to rlrt, rlsd and grpo_opsd (the additive term too); its tags only with a span that reads
    them; rlrt.confidence_min scales w, so rlrt and rlsd only; the official code's <thought> tags and an empty
    open tag (the template opens the span) are accepted."""
    official = RlrtConfig(span="thinking", span_tags=["<thought>", "</thought>"]).resolved("rlsd", **LENGTHS)
    assert (official.span, official.span_tags) == ("thinking", ["<thought>", "</thought>"])
    assert RlrtConfig(span="answer", span_tags=["", "</think>"]).resolved("grpo_opsd", **LENGTHS).span == "answer"
    assert RlrtConfig(confidence_min=0.1).resolved("rlrt", **LENGTHS).confidence_min == 0.1
    assert RlrtConfig().resolved("rlsd", **LENGTHS).span is None
    with pytest.raises(ValueError, match=r"rlrt\.span only applies to algorithm\.adv_estimator"):
        RlrtConfig(span="thinking").resolved("opsd", **LENGTHS)
    with pytest.raises(ValueError, match=r"rlrt\.span_tags=\['<thought>', '</thought>'\] only applies with rlrt\.span"):
        RlrtConfig(span_tags=["<thought>", "</thought>"]).resolved("rlsd", **LENGTHS)
    with pytest.raises(ValueError, match=r"rlrt\.confidence_min only applies"):
        RlrtConfig(confidence_min=0.1).resolved("grpo_opsd", **LENGTHS)


def test_needs_teacher():
    assert RlrtConfig().needs_teacher("rlrt")
    assert not RlrtConfig().needs_teacher("grpo")
    assert not RlrtConfig().needs_teacher("grpo_eb")  # reads the old-log-prob pass's entropy, not the teacher
    assert RlrtConfig(distill_loss_coef=0.1).needs_teacher("grpo")


def test_templates_partial_override_and_identity():
    """A partial mapping overrides one kind; the identity template "{question}" is allowed."""
    cfg = RlrtConfig.from_section({"privileged_templates": {"answer": "{question}"}})
    assert cfg.privileged_templates == {**DEFAULT_TEMPLATES, "answer": "{question}"}


def test_teacher_chat_template_kwargs_null_or_a_plain_mapping():
    """Null (the default) means the student's kwargs; a mapping, also an OmegaConf node from the Hydra config, is
    kept as a plain dict (the renderer compares it with data.apply_chat_template_kwargs) and survives resolution."""
    assert RlrtConfig().teacher_chat_template_kwargs is None
    node = OmegaConf.create({"rlrt": {"teacher_chat_template_kwargs": {"enable_thinking": True}}})
    cfg = RlrtConfig.from_section(node.rlrt)
    assert cfg.teacher_chat_template_kwargs == {"enable_thinking": True}
    assert type(cfg.teacher_chat_template_kwargs) is dict
    direct = RlrtConfig(teacher_chat_template_kwargs=node.rlrt.teacher_chat_template_kwargs)
    assert type(direct.teacher_chat_template_kwargs) is dict and direct.teacher_chat_template_kwargs == {"enable_thinking": True}
    assert RlrtConfig(teacher_chat_template_kwargs={}).teacher_chat_template_kwargs == {}
    resolved = cfg.resolved("rlsd", **LENGTHS)
    assert resolved.teacher_chat_template_kwargs == {"enable_thinking": True}


def test_load_from_full_omegaconf():
    """load_rlrt_config reads rlrt:, algorithm.adv_estimator and the data lengths of a verl config."""
    cfg = OmegaConf.create(
        {"rlrt": {"backbone_kind": "instruct"}, "algorithm": {"adv_estimator": "rlrt"},
         "data": {"max_prompt_length": 100, "max_response_length": 200}}
    )
    resolved = load_rlrt_config(cfg)
    assert (resolved.eps_w, resolved.max_privileged_prompt_length) == (0.5, 556)
    no_section = OmegaConf.create({"algorithm": {"adv_estimator": "rlsd"},
                                   "data": {"max_prompt_length": 100, "max_response_length": 200}})
    assert load_rlrt_config(no_section).lambda_decay_steps == 50


def test_snapshot_teacher_refreshes_on_steps_1_N_plus_1_and_so_on():
    """(k − 1) mod N = 0: the teacher equals θ_old exactly on steps 1, N + 1, 2N + 1 (RLSD's official code's
    step % N == 0 is one step later); other teachers never refresh."""
    cfg = RlrtConfig(teacher="snapshot", teacher_sync_steps=2)
    assert [k for k in range(1, 8) if cfg.refreshes_teacher_at(k)] == [1, 3, 5, 7]
    assert not any(RlrtConfig(teacher=t).refreshes_teacher_at(k) for t in ("live", "frozen") for k in range(1, 8))
