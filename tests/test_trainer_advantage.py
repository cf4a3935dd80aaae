"""RlrtSyncTrainer._compute_advantage: the advantages it stores for the update are the formula's, and the verl
method it mirrors is pinned.

TransferQueue is replaced by an in-memory store (a test double of the storage: the two calls trainer.py makes);
verl's config, estimator registry, KL penalty and rollout correction run for real. The trainer object is built
without verl's ``__init__`` (which starts Ray workers), with only the attributes ``_compute_advantage`` reads.
"""

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from omegaconf import OmegaConf
from tensordict import NonTensorStack
from torch.testing import assert_close
from transformers import AutoConfig, AutoTokenizer
from transfer_queue import KVBatchMeta
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from rlrt_recipe import signals
from rlrt_recipe.config import RlrtConfig, load_rlrt_config
from rlrt_recipe.integration import trainer as trainer_module
from rlrt_recipe.integration.estimators import grpo_advantages
from rlrt_recipe.integration.teacher import OUTPUT_FIELDS
from rlrt_recipe.integration.trainer import RlrtSyncTrainer, estimator_constants

VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
# sha256 of inspect.getsource(PPOTrainer._compute_advantage), verl 0.9.1 (trainer_base.py:1743-1802).
VERL_COMPUTE_ADVANTAGE_SHA256 = "2a4a2aa4a475b228d401959818e0b9019276ce27961c133961de217baa387da7"

# Two prompts × three rollouts, every length different. Row 0 is correct without a teacher and row 1 is
# incorrect with one, so swapping correct and has_teacher changes which rows rlsd (gate "all") reweights.
UIDS = ["p0", "p0", "p0", "p1", "p1", "p1"]
LENGTHS = [3, 1, 4, 2, 5, 6]
CORRECT = [True, False, True, False, True, False]
HAS_TEACHER = [False, True, True, True, True, False]
# linear_decay λ₀ = 0.5 with K = 2: λ = 0.25 at the step under test (2), 0.5 at the stale step (1).
STEP, LAMBDA_AT_STEP, LAMBDA_AT_STALE_STEP = 2, 0.25, 0.5
RLRT_SECTIONS = {
    "rlsd": {"lambda_decay_steps": 2},
    "rlrt": {"lambda_schedule": "linear_decay", "lambda_decay_steps": 2},
    "opsd": {},
    "grpo_opsd": {},
    "grpo_eb": {},
}


class InMemoryTransferQueue:
    """``kv_batch_get``/``kv_batch_put`` over a dict of rows. Like TransferQueue, a get leaves out a selected field
    that some key does not hold (verl asks for ``values``, ``ref_log_prob``, ``rollout_log_probs`` either way), and
    rows come back as verl's V1 stores them: jagged nested tensors, dense scalars, a NonTensorStack of strings."""

    def __init__(self):
        self.rows: dict[tuple[str, str], dict] = {}
        self.tags: dict[tuple[str, str], dict] = {}
        self.put_fields: list[list[str]] = []

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        for i, key in enumerate(keys):
            self.rows.setdefault((partition_id, key), {})
            self.tags.setdefault((partition_id, key), {}).update(tags[i] if tags else {})
        if fields is not None:
            assert fields.batch_size == torch.Size([len(keys)]), "kv_batch_put: fields must have one row per key"
            self.put_fields.append(sorted(fields.keys()))
            for name in fields.keys():
                for key, value in zip(keys, _rows_of(fields.get(name)), strict=True):
                    self.rows[(partition_id, key)][name] = value
        stored = set.intersection(*(set(self.rows[(partition_id, key)]) for key in keys))
        return KVBatchMeta(keys=list(keys), tags=[dict(self.tags[(partition_id, key)]) for key in keys],
                           partition_id=partition_id, fields=sorted(stored))

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        rows = [self.rows[(partition_id, key)] for key in keys]
        present = [name for name in select_fields if all(name in row for row in rows)]
        return list_of_dict_to_tensordict([{name: row[name] for name in present} for row in rows])


def _rows_of(value):
    if isinstance(value, NonTensorStack):
        return value.tolist()
    return list(value.unbind(0))  # a jagged nested tensor unbinds into its rows of different lengths


def _stored_batch(seed=0, **extra_fields):
    """Per-row fields as the V1 agent loop, the old-log-prob step and the teacher step store them: rm_scores has the
    reward on the last token, teacher_log_probs = old_log_probs on rows without a teacher (Δ = 0 there), entropy
    (θ_old's token entropy, which verl's old-log-prob pass stores for every row) in [0, 3)."""
    gen = torch.Generator().manual_seed(seed)
    entropy_gen = torch.Generator().manual_seed(seed + 1)  # its own stream: the other fields stay as they were
    rows = []
    for i, n in enumerate(LENGTHS):
        old = -torch.rand(n, generator=gen) * 3  # [n_i]
        teacher = -torch.rand(n, generator=gen) * 3 if HAS_TEACHER[i] else old.clone()  # [n_i]
        scores = torch.zeros(n)  # [n_i]
        scores[-1] = float(CORRECT[i])
        row = dict(uid=UIDS[i], response_mask=torch.ones(n, dtype=torch.int64), rm_scores=scores,
                   old_log_probs=old, teacher_log_probs=teacher, correct=torch.tensor(CORRECT[i]),
                   has_teacher=torch.tensor(HAS_TEACHER[i]), entropy=torch.rand(n, generator=entropy_gen) * 3)
        for name, make in extra_fields.items():
            row[name] = make(old, gen)
        rows.append(row)
    return rows


def _padded(rows, name) -> torch.Tensor:
    return torch.nested.as_nested_tensor([row[name] for row in rows], layout=torch.jagged).to_padded_tensor(0.0)


def _config(adv_estimator, rlrt=None, **algorithm):
    cfg = OmegaConf.load(VERL_CONFIG)
    cfg.algorithm.adv_estimator = adv_estimator
    cfg.algorithm.merge_with(algorithm)
    cfg.rlrt = rlrt or {}
    return cfg


def _run(monkeypatch, cfg, rows, *, global_steps=STEP, constants=None):
    """Store ``rows``, run RlrtSyncTrainer._compute_advantage on them (with the run's ``estimator_constants``,
    none by default); (store, keys, returned meta, metrics)."""
    store = InMemoryTransferQueue()
    monkeypatch.setattr(trainer_module, "tq", store)
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(UIDS)]
    batch = store.kv_batch_put(keys, "train", fields=list_of_dict_to_tensordict(rows),
                               tags=[{"global_steps": global_steps} for _ in keys])
    trainer = object.__new__(RlrtSyncTrainer)
    trainer.config = cfg
    trainer.rlrt_cfg = load_rlrt_config(cfg)
    trainer.adv_estimator = str(cfg.algorithm.adv_estimator)
    trainer.global_steps = global_steps
    trainer.estimator_constants = constants or {"span_tag_ids": None, "vocab_size": None}
    trainer._warned_empty_span = False
    if cfg.algorithm.use_kl_in_reward:  # as PPOTrainer.__init__ builds it
        trainer.kl_ctrl_in_reward = core_algos.get_kl_controller(cfg.algorithm.kl_ctrl)
    metrics = {}
    meta = trainer._compute_advantage(batch, metrics)
    return store, keys, meta, metrics


def _stored(store, keys, name) -> list[torch.Tensor]:
    return [store.rows[("train", key)][name] for key in keys]


def _expected(name, cfg, rows, rewards, *, lam=LAMBDA_AT_STEP, correct=CORRECT, has_teacher=HAS_TEACHER):
    """Â from the formulas of signals.py on the padded stored fields, A from verl's GRPO."""
    mask = _padded(rows, "response_mask")  # [B, T]
    delta = signals.privileged_gain(_padded(rows, "teacher_log_probs"), _padded(rows, "old_log_probs"))  # [B, T]
    grpo = grpo_advantages(rewards, mask, np.array(UIDS, dtype=object), cfg.algorithm)  # [B, T]
    rlrt_cfg = load_rlrt_config(cfg)
    if name == "opsd":
        return signals.opsd_advantages(delta, mask)
    if name == "grpo_opsd":
        return signals.opsd_advantages(delta, mask, adv=grpo, beta=rlrt_cfg.distill_adv_coef)
    if name == "grpo_eb":
        return signals.entropy_bonus_advantages(grpo, _padded(rows, "entropy"), mask, alpha=rlrt_cfg.eb_alpha,
                                                kappa=rlrt_cfg.eb_kappa)
    return signals.reweighted_advantages(
        delta, grpo, mask, correct=torch.tensor(correct), has_teacher=torch.tensor(has_teacher),
        direction=rlrt_cfg.direction, gate=rlrt_cfg.gate, lam=lam, eps_w=rlrt_cfg.eps_w,
    )  # [B, T]


def _assert_rows(stored: list[torch.Tensor], expected: torch.Tensor) -> None:
    assert [row.shape for row in stored] == [torch.Size([n]) for n in LENGTHS]
    for i, (row, n) in enumerate(zip(stored, LENGTHS, strict=True)):
        assert_close(row, expected[i, :n], msg=lambda m, i=i: f"row {i}: {m}")


# --- the mirror of verl's method ---------------------------------------------------------------------------


def test_verl_compute_advantage_is_the_version_mirrored():
    """Fails when verl changes PPOTrainer._compute_advantage, which RlrtSyncTrainer._compute_advantage copies with
    the estimator call replaced (the copy drifted once: it lost verl's bypass-mode clause)."""
    source = inspect.getsource(PPOTrainer._compute_advantage)
    verl_lines, verl_start = inspect.getsourcelines(PPOTrainer._compute_advantage)
    our_lines, our_start = inspect.getsourcelines(RlrtSyncTrainer._compute_advantage)
    assert hashlib.sha256(source.encode()).hexdigest() == VERL_COMPUTE_ADVANTAGE_SHA256, (
        "verl's PPOTrainer._compute_advantage changed: re-sync RlrtSyncTrainer._compute_advantage in "
        "rlrt_recipe/integration/trainer.py with it, then update this hash "
        f"(ours: trainer.py:{our_start}-{our_start + len(our_lines) - 1}; "
        f"verl's: {inspect.getsourcefile(PPOTrainer)}:{verl_start}-{verl_start + len(verl_lines) - 1})"
    )


def test_verl_init_sets_trainer_mode_right_before_building_the_replay_buffer():
    """RlrtSyncTrainer._build_replay_buffer rewrites trainer_mode to "sync"; that works only while verl's __init__
    sets trainer_mode and builds the replay buffer in this order (review A9)."""
    source = inspect.getsource(PPOTrainer.__init__)
    mode = source.index("self.trainer_mode = self.config.trainer.v1.trainer_mode")
    buffer = source.index("self.replay_buffer = self._build_replay_buffer()")
    assert mode < buffer and "trainer_mode" not in source[buffer:].split("\n", 1)[1].split("def ")[0], (
        "verl's PPOTrainer.__init__ changed around trainer_mode / _build_replay_buffer: re-check "
        "RlrtSyncTrainer._build_replay_buffer in rlrt_recipe/integration/trainer.py"
    )


def test_verl_init_tokenizer_is_the_version_mirrored():
    """RlrtSyncTrainer._init_tokenizer mirrors verl's three lines and keeps the model's configs (review A8)."""
    source = inspect.getsource(PPOTrainer._init_tokenizer)
    body = [line.strip() for line in source.splitlines()[1:]
            if line.strip() and not line.strip().startswith(("#", '"""'))]
    assert body == [
        "model_config: HFModelConfig = omega_conf_to_dataclass(self.config.actor_rollout_ref.model)",
        "self.tokenizer = model_config.tokenizer",
        "self.processor = model_config.processor",
    ], "verl's PPOTrainer._init_tokenizer changed: re-sync RlrtSyncTrainer._init_tokenizer in trainer.py with it"


# --- the advantages the update reads ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rlsd", "rlrt", "opsd", "grpo_opsd", "grpo_eb"])
def test_stored_advantages_are_the_formulas(monkeypatch, name):
    """The advantages (and returns) written back for the update equal signals' formula on the stored fields,
    nested with each row's response length. Guards the estimator call: correct and has_teacher swapped, or λ
    taken at a stale step, changes rlsd's rows (checked below on the expected values themselves)."""
    cfg = _config(name, RLRT_SECTIONS[name])
    rows = _stored_batch()
    store, keys, meta, metrics = _run(monkeypatch, cfg, rows)

    expected = _expected(name, cfg, rows, _padded(rows, "rm_scores"))  # [B, T]
    advantages = _stored(store, keys, "advantages")
    _assert_rows(advantages, expected)
    assert all(row.equal(ret) for row, ret in zip(advantages, _stored(store, keys, "returns"), strict=True))
    assert store.put_fields[-1] == ["advantages", "returns"]
    assert {"advantages", "returns"} <= set(meta.fields) and meta.keys == keys
    if name in ("rlsd", "rlrt"):
        assert load_rlrt_config(cfg).lambda_at(STEP) == LAMBDA_AT_STEP
        assert load_rlrt_config(cfg).lambda_at(STEP - 1) == LAMBDA_AT_STALE_STEP
        assert metrics["rlrt/lambda"] == LAMBDA_AT_STEP


OPEN, CLOSE, VOCAB = 7, 8, 50  # tag ids of the span test and |V|


def _tagged_responses(old, gen):
    """Response ids in [10, 50) with, on rows long enough, the open tag first and the close tag at position 3."""
    ids = torch.randint(10, VOCAB, old.shape, generator=gen)
    if len(ids) >= 5:
        ids[0], ids[3] = OPEN, CLOSE
    return ids


@pytest.mark.parametrize("name, span", [("rlsd", "thinking"), ("rlrt", "answer"), ("grpo_opsd", "thinking")])
def test_span_and_confidence_reach_the_estimator(monkeypatch, name, span):
    """rlrt.span cuts S_tok from verl's stored response ids with the run's tag ids; rlrt.confidence_min reads the
    teacher step's teacher_entropy with |V| (rlrt, rlsd): the stored Â is family_advantages with those pieces, and
    differs from Â without them."""
    section = dict(RLRT_SECTIONS[name], span=span)
    if name != "grpo_opsd":
        section["confidence_min"] = 0.3
    cfg = _config(name, section)
    rows = _stored_batch(responses=_tagged_responses,
                         teacher_entropy=lambda old, gen: torch.rand(old.shape, generator=gen) * 4)
    constants = {"span_tag_ids": ([OPEN], [CLOSE]), "vocab_size": VOCAB}
    store, keys, _, metrics = _run(monkeypatch, cfg, rows, constants=constants)

    rlrt_cfg, mask = load_rlrt_config(cfg), _padded(rows, "response_mask")  # [B, T]
    responses = _padded(rows, "responses").long()  # [B, T]
    tokens = signals.span_mask(responses, mask, span=span, open_ids=[OPEN], close_ids=[CLOSE])  # [B, T]
    assert 0 < tokens.sum() < mask.sum()  # the span keeps some response tokens, not all
    confidence = None
    if name != "grpo_opsd":
        confidence = signals.teacher_confidence(_padded(rows, "teacher_entropy"), mask, vocab_size=VOCAB, g_min=0.3)
    delta = signals.privileged_gain(_padded(rows, "teacher_log_probs"), _padded(rows, "old_log_probs"))  # [B, T]
    grpo = grpo_advantages(_padded(rows, "rm_scores"), mask, np.array(UIDS, dtype=object), cfg.algorithm)  # [B, T]
    correct, has_teacher = torch.tensor(CORRECT), torch.tensor(HAS_TEACHER)
    if name == "grpo_opsd":
        gate, box, lam, lam_add = torch.ones(len(UIDS), dtype=torch.bool), (torch.ones(6), torch.ones(6)), 0.0, 0.1
    else:
        gate = signals.selected_rows(rlrt_cfg.gate, correct=correct, has_teacher=has_teacher, group=UIDS,
                                     adv_sign=grpo.sum(-1).sign())
        box, lam, lam_add = signals.clip_box(correct, eps_w=rlrt_cfg.eps_w), LAMBDA_AT_STEP, 0.0
    low, high = box
    expected = signals.family_advantages(
        delta, grpo, mask, rows=gate, tokens=tokens, direction=rlrt_cfg.direction or 1, low=low, high=high, lam=lam,
        confidence=confidence, lam_add=lam_add, additive=rlrt_cfg.additive)  # [B, T]
    _assert_rows(_stored(store, keys, "advantages"), expected)
    without = _expected(name, _config(name, RLRT_SECTIONS[name]), rows, _padded(rows, "rm_scores"))  # [B, T]
    assert not torch.allclose(expected, without)
    scored = mask.bool() & has_teacher[:, None]  # [B, T]
    assert metrics["rlrt/span_token_frac"] == pytest.approx(tokens[scored].float().mean().item())
    if confidence is None:
        assert "rlrt/confidence_mean" not in metrics
    else:
        assert metrics["rlrt/confidence_mean"] == pytest.approx(confidence[scored].mean().item())
        assert 0.3 <= metrics["rlrt/confidence_mean"] < 1.0


def test_estimator_constants_tokenize_the_tags_and_read_the_vocabulary(tiny_model_dir, caplog):
    """The trainer's constant inputs: <think>/</think> are single added tokens of the tiny tokenizer (as Qwen3's),
    decoded back to the tag; a tag of several tokens (<thought> here) is used as that sequence and logged; an empty
    open tag gives no ids; |V| is the model config's vocab_size."""
    tokenizer, hf_config = AutoTokenizer.from_pretrained(tiny_model_dir), AutoConfig.from_pretrained(tiny_model_dir)
    constants = estimator_constants(RlrtConfig(span="thinking", confidence_min=0.1), tokenizer, hf_config)
    (open_ids, close_ids), vocab = constants["span_tag_ids"], constants["vocab_size"]
    assert len(open_ids) == len(close_ids) == 1
    assert (tokenizer.decode(open_ids), tokenizer.decode(close_ids)) == ("<think>", "</think>")
    assert vocab == hf_config.vocab_size and vocab >= len(tokenizer)
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        official = estimator_constants(RlrtConfig(span="thinking", span_tags=["<thought>", "</thought>"]), tokenizer,
                                       hf_config)["span_tag_ids"]
    assert len(official[0]) > 1 and tokenizer.decode(official[0]) == "<thought>"
    assert "'<thought>' is" in caplog.text
    assert estimator_constants(RlrtConfig(span="thinking", span_tags=["", "</think>"]), tokenizer,
                               hf_config)["span_tag_ids"][0] == []


def test_a_span_whose_tags_never_match_is_logged_as_zero_and_warned(monkeypatch, caplog):
    """Tags absent from every response: no token is reweighted (Â = A), rlrt/span_token_frac = 0 and one warning."""
    cfg = _config("rlsd", dict(RLRT_SECTIONS["rlsd"], span="thinking"))
    rows = _stored_batch(responses=_tagged_responses)
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        store, keys, _, metrics = _run(monkeypatch, cfg, rows, constants={"span_tag_ids": ([3], [4]), "vocab_size": None})
    assert metrics["rlrt/span_token_frac"] == 0.0
    assert "no response token of step 2 lies in the span" in caplog.text
    grpo = grpo_advantages(_padded(rows, "rm_scores"), _padded(rows, "response_mask"), np.array(UIDS, dtype=object),
                           cfg.algorithm)  # [B, T]
    _assert_rows(_stored(store, keys, "advantages"), grpo)


def test_span_without_the_response_ids_names_the_missing_input(monkeypatch):
    """A run whose estimator constants lack the tag ids stops naming them (the trainer builds them at init)."""
    cfg = _config("rlsd", dict(RLRT_SECTIONS["rlsd"], span="thinking"))
    rows = _stored_batch(responses=_tagged_responses)
    with pytest.raises(ValueError, match=r"called without span_tag_ids"):
        _run(monkeypatch, cfg, rows)


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_eb_reads_the_entropy_and_no_teacher_field(monkeypatch, norm):
    """grpo_eb on rows that hold no teacher field (the teacher step is skipped for it): the stored advantages are
    A + min(α·H, |A|/κ) with α = 0.4, κ = 2 on each row's response tokens, A verl's GRPO; the step logs the bonus
    metrics and none of the Δ/w ones."""
    cfg = _config("grpo_eb", norm_adv_by_std_in_grpo=norm)
    rows = [{k: v for k, v in row.items() if k not in OUTPUT_FIELDS} for row in _stored_batch()]
    store, keys, _, metrics = _run(monkeypatch, cfg, rows)

    mask, entropy = _padded(rows, "response_mask").bool(), _padded(rows, "entropy")  # [B, T]
    grpo = grpo_advantages(_padded(rows, "rm_scores"), mask, np.array(UIDS, dtype=object), cfg.algorithm)  # [B, T]
    bonus = torch.where(mask, torch.minimum(0.4 * entropy, grpo.abs() / 2.0), 0.0)  # [B, T]
    _assert_rows(_stored(store, keys, "advantages"), torch.where(mask, grpo + bonus, 0.0))
    capped = (grpo.abs() / 2.0 < 0.4 * entropy)[mask & (grpo != 0)]  # [N]
    assert 0 < capped.float().mean() < 1  # the batch has tokens on both sides of the cap
    assert metrics == {"rlrt/eb_bonus_mean": pytest.approx(bonus[mask].mean().item()),
                       "rlrt/eb_capped_frac": pytest.approx(capped.float().mean().item())}


def test_grpo_eb_without_the_entropy_field_names_it(monkeypatch):
    """Without verl's entropy field in TransferQueue (bypass mode, which check_config refuses for grpo_eb, stores
    none) the advantage step stops, naming the field, instead of reading nothing."""
    rows = [{k: v for k, v in row.items() if k != "entropy"} for row in _stored_batch()]
    with pytest.raises(RuntimeError, match=r"the advantage needs \['entropy'\]"):
        _run(monkeypatch, _config("grpo_eb"), rows)


def test_the_batch_tells_a_swap_and_a_stale_step_apart():
    """The test above can fail: on its batch, rlsd's Â with correct/has_teacher swapped, or with λ of step − 1,
    differs from the right one on some row."""
    cfg = _config("rlsd", RLRT_SECTIONS["rlsd"])
    rows = _stored_batch()
    rewards = _padded(rows, "rm_scores")  # [B, T]
    right = _expected("rlsd", cfg, rows, rewards)  # [B, T]
    swapped = _expected("rlsd", cfg, rows, rewards, correct=HAS_TEACHER, has_teacher=CORRECT)  # [B, T]
    stale = _expected("rlsd", cfg, rows, rewards, lam=LAMBDA_AT_STALE_STEP)  # [B, T]
    assert (right - swapped).abs().max() > 1e-3
    assert (right - stale).abs().max() > 1e-3


def test_kl_in_reward_reaches_the_estimator(monkeypatch):
    """With algorithm.use_kl_in_reward the estimator sees r − β·(s − s_ref) on each token (verl's apply_kl_penalty,
    which needs ref_log_prob from TransferQueue), and the penalised rewards are written back."""
    beta = 0.5
    cfg = _config("rlsd", RLRT_SECTIONS["rlsd"], use_kl_in_reward=True, kl_ctrl={"kl_coef": beta})
    rows = _stored_batch(ref_log_prob=lambda old, gen: old - torch.rand(old.shape, generator=gen))
    store, keys, _, metrics = _run(monkeypatch, cfg, rows)

    old, ref = _padded(rows, "old_log_probs"), _padded(rows, "ref_log_prob")  # [B, T]
    rewards = _padded(rows, "rm_scores") - beta * (old - ref) * _padded(rows, "response_mask")  # [B, T]
    _assert_rows(_stored(store, keys, "token_level_rewards"), rewards)
    _assert_rows(_stored(store, keys, "advantages"), _expected("rlsd", cfg, rows, rewards))
    assert metrics["actor/reward_kl_penalty_coeff"] == beta


@pytest.mark.parametrize("bypass_mode", [False, True])
def test_rollout_correction_runs_unless_bypass_mode(monkeypatch, bypass_mode):
    """As in verl: with rollout_log_probs stored, the rollout correction rewrites response_mask in decoupled mode
    and is skipped in bypass mode (where old_log_probs are the rollout's and the actor computes it)."""
    cfg = _config("rlsd", RLRT_SECTIONS["rlsd"], rollout_correction={"bypass_mode": bypass_mode})
    rows = _stored_batch(rollout_log_probs=lambda old, gen: old - 0.1 * torch.rand(old.shape, generator=gen))
    store, keys, _, metrics = _run(monkeypatch, cfg, rows)

    corrected = "response_mask" in store.put_fields[-1]
    assert corrected is not bypass_mode
    assert any(key.startswith("rollout_corr/") for key in metrics) is not bypass_mode
    _assert_rows(_stored(store, keys, "advantages"), _expected("rlsd", cfg, rows, _padded(rows, "rm_scores")))


# --- the reward's timeout fraction ------------------------------------------------------------------------------


def test_reward_timeout_fraction_counts_real_rows_only(monkeypatch):
    """rlrt/reward_timeout_frac reads each row's extra_fields["reward_extra_info"]["timeout"] as the V1 agent loop
    stores it; verl's padding rows (copies of a real row) are left out; no key in any row, no metric."""
    store = InMemoryTransferQueue()
    monkeypatch.setattr(trainer_module, "tq", store)
    timeouts = [1.0, 0.0, 0.0, 1.0, 1.0]  # the last row is verl's padding copy
    rows = [{"extra_fields": {"reward_extra_info": {"acc": 0.0, "timeout": t}}} for t in timeouts]
    keys = [f"k{i}" for i in range(len(rows))]
    tags = [{"is_padding": i == len(rows) - 1} for i in range(len(rows))]
    batch = store.kv_batch_put(keys, "train", fields=list_of_dict_to_tensordict(rows), tags=tags)
    assert trainer_module.reward_timeout_metrics(batch) == {"rlrt/reward_timeout_frac": pytest.approx(2 / 4)}

    rows = [{"extra_fields": {"reward_extra_info": {"acc": 1.0}}} for _ in keys]
    batch = store.kv_batch_put(keys, "other", fields=list_of_dict_to_tensordict(rows), tags=tags)
    assert trainer_module.reward_timeout_metrics(batch) == {}
