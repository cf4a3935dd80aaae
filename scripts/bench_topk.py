"""SDPO's top-K support on CPU: exact (live ids, teacher per micro-batch) against θ_old's ids and one teacher pass.

    python scripts/bench_topk.py                         # hidden 256, 4 layers, vocab 8192, K = 100, B = 16; ~40 s
    python scripts/bench_topk.py --tiny                  # CI: tiny model, K = 16, a few seconds, every field printed
    python scripts/bench_topk.py --lrs 1e-5 5e-6 --k 50 --json out.json

SDPO's loss per response token: ℓ_t = JSD_α(S, T) · min(π_θ(y_t)/π_old(y_t), cap) (ratio detached), token-mean, with
S, T the student's and the teacher's probabilities at the student's top-K ids plus one tail bucket
(``signals.topk_jsd``, ``signals.capped_is_ratio``; α, cap from ``RlrtConfig``). The teacher is a frozen copy of θ₀
reading a privileged prefix (random tokens) + the prompt + the same response. Two ways to get the top-K support:

    (a) exact   the ids are the top-K of the student's LIVE logits in each update micro-batch, and the teacher is
                forwarded there and gathered at them (SDPO's own code);
    (b) stored  before the updates, θ_old's top-K ids and one teacher pass gathered at them, stored as K int32 ids +
                K bf16 values per token; each update gathers the live student at the stored ids. As shipped
                (``integration/topk.py``, ``RlrtActorRolloutRefWorker.compute_log_prob``), the ids are taken inside
                verl's old-log-prob pass (a logits processor: one extra processor call, no extra forward). Our first
                version, not shipped, took them in a separate "select" forward of θ_old over the rows with a
                demonstration, after verl's unchanged old-log-prob pass; it is timed too. Both give the same ids, so
                part 1 holds for both; only their cost differs.

One step = B rows split into 2 mini-batches, one AdamW step each (weight decay 0.01). Mini-batch 1 sees θ = θ_old,
where (a) and (b) coincide; mini-batch 2 sees θ after one step, so they differ there, more with a larger lr.

1. Support difference, per lr of ``--lrs``: from θ_old, one AdamW step with (a)'s gradient on mini-batch 1, then on
   mini-batch 2 at that θ:
     overlap        mean over tokens of |live top-K of θ ∩ top-K of θ_old| / K  (1 = same support);
     loss_rel       |ℓ_a − ℓ_b| / ℓ_a, the mini-batch losses;
     grad_rel       ‖g_a − g_b‖ / ‖g_a‖, all parameters' gradients flattened, (b) with bf16 teacher values;
     grad_rel_fp32  the same with (b) storing fp32 values: the support effect alone (grad_rel − this ≈ bf16's share).
   And once, at θ_old on mini-batch 1: mb1_grad_rel_diff_fp32 (must be ~0: identical ids and values) and
   mb1_grad_rel_diff_bf16 (the bf16 storage effect alone); select_ids_same, the fraction of tokens (both
   mini-batches) where the top-K set of our first version's separate select pass equals the one taken in the
   old-log-prob pass (must be 1: the two (b) variants train on the same ids).
2. Cost: median (and min) wall seconds of one full step, each including verl's old-log-prob pass (log π_old(y_t)
   and the entropy, as verl computes it) and, for (b), a teacher pass that also computes what the shipped gather
   stores besides the K values (H^T, the mass on the K ids, τ):
     exact_s        (a)  old pass, then per mini-batch {student forward, live top-K, teacher forward, loss,
                         backward, step};
     shipped_s      (b) as shipped: old pass with θ_old's top-K taken in it, one teacher pass gathered and stored,
                         then per mini-batch {student forward, gather at the stored ids, loss, backward, step};
     select_pass_s  (b) with a separate select pass (our first version, not shipped): old pass (no top-K), a select
                         forward of θ_old (top-K of its logits), the teacher pass, then the same updates as shipped_s;
   shipped_ratio = shipped_s / exact_s, select_pass_ratio = select_pass_s / exact_s (*_min_ratio: the same of the
   minima). With one epoch (a) and (b) forward the teacher once per row; (a) forwards it once more per extra ppo
   epoch, and the select-pass variant forwards θ_old once more per row with a demonstration (every row here: the
   worst case).
   Stored bytes of (b) per response token = 4·K (int32 ids) + 2·K (bf16 values) + 3·4 (the per-token float32
   extras), and per step at the RLRT paper's scale: 2048 rollouts × mean response length (4096, 8192, 20480).

The model is built locally (``TinyModelSpec``, untied LM head, random weights); its final norm gain is multiplied by
``--logit-scale`` so that its next-token distributions are peaked like a trained LLM's (the printed entropy and top-K
mass say how peaked), without changing the scale of any matmul weight. Responses are sampled from it at temperature
1. Each forward covers one mini-batch (the old pass too), so at θ_old the live ids are bit for bit the stored ones.
Every pass computes logits at the response positions only; verl's engine computes them at every position (and the
shipped select processor takes the top-K at every position of the old-log-prob pass), so the LM head's share of each
pass is smaller here than there.
A 6.6 M-parameter random model is not a 4 B-parameter trained one: read the lr trend and the orders of magnitude,
not the lr at which a threshold is crossed. One torch thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
from dataclasses import asdict, dataclass

import torch
from transformers import Qwen2ForCausalLM

from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.signals import capped_is_ratio, topk_jsd
from rlrt_recipe.testing import TinyModelSpec, build_tiny_model
from rlrt_recipe.testing.bench import timed, write_json

LRS = (1e-6, 1e-5, 1e-4, 1e-3)  # SDPO trains at 1e-5, SRPO at 5e-6
WEIGHT_DECAY = 0.01  # SDPO's AdamW
COST_LR = 1e-5
PAPER_ROLLOUTS = 2048  # RLRT's rollouts per step
PAPER_RESPONSE_LENGTHS = (4096, 8192, 20480)
EXTRA_FLOAT32_PER_TOKEN = 3


@dataclass(frozen=True)
class BenchSize:
    """The model and the shape of one step."""

    spec: TinyModelSpec
    rows: int  # B, split into 2 mini-batches
    prompt: int
    privileged: int  # extra tokens before the prompt in the teacher's rows
    response: int
    k: int
    repeats: int  # timed steps per method


FULL = BenchSize(TinyModelSpec(hidden_size=256, num_layers=4, vocab_size=8192, tie_word_embeddings=False),
                 rows=16, prompt=32, privileged=32, response=64, k=RlrtConfig().distill_topk, repeats=5)
TINY = BenchSize(TinyModelSpec(hidden_size=64, num_layers=2, vocab_size=512, tie_word_embeddings=False),
                 rows=4, prompt=8, privileged=8, response=16, k=16, repeats=1)


# ---------------------------------------------------------------------------------------------- model and batch

def build_models(spec: TinyModelSpec, logit_scale: float) -> tuple[Qwen2ForCausalLM, Qwen2ForCausalLM]:
    """(student θ₀, frozen teacher copy of θ₀); logits are ``logit_scale`` × those of the random model."""
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(tmp, spec)
        student = Qwen2ForCausalLM.from_pretrained(tmp).eval()  # eval: no dropout, the model is still trained
    with torch.no_grad():
        student.model.norm.weight.mul_(logit_scale)  # the LM head reads the normed state linearly
    teacher = copy.deepcopy(student).requires_grad_(False)
    return student, teacher


@torch.no_grad()
def sample_minibatches(student: Qwen2ForCausalLM, size: BenchSize) -> list[dict]:
    """Random prompts, responses sampled from the student at temperature 1 (no EOS: every response has the same
    length), teacher rows = random privileged prefix + prompt + response; split into 2 mini-batches."""
    vocab = student.config.vocab_size
    prompts = torch.randint(0, vocab, (size.rows, size.prompt))  # [B, P]
    student_ids = student.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, temperature=1.0,
                                   top_k=0, top_p=1.0, min_new_tokens=size.response,
                                   max_new_tokens=size.response)  # [B, P + R]
    prefix = torch.randint(0, vocab, (size.rows, size.privileged))  # [B, Q]
    teacher_ids = torch.cat([prefix, student_ids], dim=1)  # [B, Q + P + R]
    half = size.rows // 2
    return [{"student": student_ids[rows], "teacher": teacher_ids[rows], "responses": student_ids[rows, size.prompt:]}
            for rows in (slice(0, half), slice(half, None))]


def response_logits(model: Qwen2ForCausalLM, ids: torch.Tensor, response: int) -> torch.Tensor:
    """The logits predicting each of the last ``response`` tokens  [b, R, V]."""
    return model(input_ids=ids, logits_to_keep=response + 1).logits[:, :-1]  # [b, R, V]: t predicts t + 1


def response_log_probs(model: Qwen2ForCausalLM, ids: torch.Tensor, response: int) -> torch.Tensor:
    """log softmax of the logits predicting each of the last ``response`` tokens  [b, R, V]."""
    return torch.log_softmax(response_logits(model, ids, response).float(), dim=-1)  # [b, R, V]


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H = −Σ_v p_v log p_v per position  [b, R] of log-probs [b, R, V]."""
    return -(log_probs.exp() * log_probs).sum(-1)  # [b, R]


# ---------------------------------------------------------------------------------------------- the two supports

@torch.no_grad()
def old_pass(student: Qwen2ForCausalLM, mb: dict, k: int | None = None) -> dict:
    """verl's old-log-prob pass at θ_old: log π_old(y_t) [b, R] and the entropy [b, R] (verl computes it whatever the
    loss); with ``k`` also θ_old's top-K ids [b, R, K] int32, which verl's pass does not return."""
    log_probs = response_log_probs(student, mb["student"], mb["responses"].shape[1])  # [b, R, V]
    out = {"old": log_probs.gather(-1, mb["responses"][..., None])[..., 0], "entropy": entropy(log_probs)}  # [b, R]
    if k is not None:
        out["ids"] = log_probs.topk(k, dim=-1).indices.to(torch.int32)  # [b, R, K]
    return out


@torch.no_grad()
def select_pass(student: Qwen2ForCausalLM, mb: dict, k: int) -> torch.Tensor:
    """Our first version's separate select forward (not shipped): θ_old's top-K ids [b, R, K] int32, from the logits
    of a forward of its own (the same ids as from the log-probs: softmax preserves the order)."""
    logits = response_logits(student, mb["student"], mb["responses"].shape[1])  # [b, R, V]
    return logits.topk(k, dim=-1).indices.to(torch.int32)  # [b, R, K]


@torch.no_grad()
def teacher_pass(teacher: Qwen2ForCausalLM, mb: dict, ids: torch.Tensor) -> torch.Tensor:
    """The teacher's log-probs at ``ids`` [b, R, K] float32, over its own (privileged) rows."""
    log_probs = response_log_probs(teacher, mb["teacher"], mb["responses"].shape[1])  # [b, R, V]
    return log_probs.gather(-1, ids.long())  # [b, R, K]


@torch.no_grad()
def stored_teacher_pass(teacher: Qwen2ForCausalLM, mb: dict, ids: torch.Tensor) -> dict:
    """(b)'s teacher pass, what the shipped gather stores: the teacher's log-probs at ``ids`` in bf16 [b, R, K], and
    per token its entropy H^T, its mass on the K ids and τ = log π_T(y_t), float32 [b, R] each."""
    log_probs = response_log_probs(teacher, mb["teacher"], mb["responses"].shape[1])  # [b, R, V]
    values = log_probs.gather(-1, ids.long())  # [b, R, K]
    return {"ids": ids, "values": values.to(torch.bfloat16), "teacher_entropy": entropy(log_probs),
            "mass": values.exp().sum(-1), "token": log_probs.gather(-1, mb["responses"][..., None])[..., 0]}


def live_support(teacher: Qwen2ForCausalLM, mb: dict, k: int):
    """(a): the live student's top-K ids, the teacher forwarded here and gathered at them."""
    def support(student_log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = student_log_probs.detach().topk(k, dim=-1).indices  # [b, R, K]
        return ids, teacher_pass(teacher, mb, ids)
    return support


def stored_support(ids: torch.Tensor, teacher_values: torch.Tensor):
    """(b): the ids and teacher values stored before the updates (values as stored: bf16 or fp32)."""
    return lambda student_log_probs: (ids.long(), teacher_values.float())


def sdpo_loss(student: Qwen2ForCausalLM, mb: dict, old: torch.Tensor, support, cfg: RlrtConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(token-mean SDPO loss of ``mb`` at the student's current weights, the top-K ids it used [b, R, K])."""
    log_probs = response_log_probs(student, mb["student"], mb["responses"].shape[1])  # [b, R, V], live θ
    ids, teacher_topk = support(log_probs)  # [b, R, K] each
    divergence = topk_jsd(log_probs.gather(-1, ids), teacher_topk, cfg.distill_jsd_alpha)  # [b, R]
    token = log_probs.gather(-1, mb["responses"][..., None])[..., 0]  # [b, R] log π_θ(y_t)
    ratio = capped_is_ratio(token, old, cfg.distill_is_cap)  # [b, R], detached
    return (divergence * ratio).mean(), ids


# ---------------------------------------------------------------------------------------------- 1. support difference

def loss_and_grad(student: Qwen2ForCausalLM, mb: dict, old: torch.Tensor, support, cfg: RlrtConfig
                  ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(loss, every parameter's gradient flattened [N], the ids used) at the student's current weights."""
    student.zero_grad(set_to_none=True)
    loss, ids = sdpo_loss(student, mb, old, support, cfg)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in student.parameters()]), ids


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖a‖."""
    return ((a - b).norm() / a.norm()).item()


def support_sweep(student, teacher, minibatches: list[dict], lrs: list[float], k: int, cfg: RlrtConfig) -> dict:
    """Every figure of part 1 (module docstring): the mini-batch-1 check at θ_old, then one row per lr."""
    stored = []
    for mb in minibatches:
        old = old_pass(student, mb, k)
        values = teacher_pass(teacher, mb, old["ids"])  # [b, R, K] float32
        stored.append({**old, "fp32": values, "bf16": values.to(torch.bfloat16)})
    theta_old = copy.deepcopy(student.state_dict())
    mb1, mb2 = minibatches
    s1, s2 = stored

    _, g1, _ = loss_and_grad(student, mb1, s1["old"], live_support(teacher, mb1, k), cfg)
    _, g1_fp32, _ = loss_and_grad(student, mb1, s1["old"], stored_support(s1["ids"], s1["fp32"]), cfg)
    _, g1_bf16, _ = loss_and_grad(student, mb1, s1["old"], stored_support(s1["ids"], s1["bf16"]), cfg)
    with torch.no_grad():
        log_probs = response_log_probs(student, mb2["student"], mb2["responses"].shape[1])  # [b, R, V]
        topk_mass = log_probs.gather(-1, s2["ids"].long()).exp().sum(-1).mean().item()
        mean_entropy = entropy(log_probs).mean().item()
        same = [(select_pass(student, mb, k).sort(-1).values == s["ids"].sort(-1).values).all(-1)  # [b, R]
                for mb, s in zip(minibatches, stored)]
    result = {"mb1_grad_rel_diff_fp32": rel(g1, g1_fp32), "mb1_grad_rel_diff_bf16": rel(g1, g1_bf16),
              "select_ids_same": torch.cat(same).float().mean().item(), "topk_mass": topk_mass,
              "entropy": mean_entropy, "lrs": []}

    for lr in lrs:
        student.load_state_dict(theta_old)
        optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        offset = 0
        for p in student.parameters():  # (a)'s mini-batch-1 gradient at θ_old, the same for every lr
            p.grad = g1[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        optimizer.step()
        loss_a, g_a, live_ids = loss_and_grad(student, mb2, s2["old"], live_support(teacher, mb2, k), cfg)
        loss_b, g_b, _ = loss_and_grad(student, mb2, s2["old"], stored_support(s2["ids"], s2["bf16"]), cfg)
        _, g_b32, _ = loss_and_grad(student, mb2, s2["old"], stored_support(s2["ids"], s2["fp32"]), cfg)
        shared = (live_ids[..., :, None] == s2["ids"].long()[..., None, :]).any(-1)  # [b, R, K]
        result["lrs"].append({"lr": lr, "overlap": shared.float().mean().item(),
                              "loss_rel": abs(loss_a - loss_b) / loss_a,
                              "grad_rel": rel(g_a, g_b), "grad_rel_fp32": rel(g_a, g_b32)})
    student.load_state_dict(theta_old)
    student.zero_grad(set_to_none=True)
    return result


# ---------------------------------------------------------------------------------------------- 2. cost

def step_exact(student, teacher, optimizer, minibatches: list[dict], k: int, cfg: RlrtConfig) -> None:
    """(a): old pass, then per mini-batch the live top-K and a teacher forward inside the update."""
    olds = [old_pass(student, mb) for mb in minibatches]
    for mb, old in zip(minibatches, olds):
        optimizer.zero_grad(set_to_none=True)
        sdpo_loss(student, mb, old["old"], live_support(teacher, mb, k), cfg)[0].backward()
        optimizer.step()


def stored_updates(student, optimizer, minibatches: list[dict], olds: list[dict], stored: list[dict],
                   cfg: RlrtConfig) -> None:
    """(b)'s updates: per mini-batch, the live student gathered at the stored ids against the stored values."""
    for mb, old, s in zip(minibatches, olds, stored):
        optimizer.zero_grad(set_to_none=True)
        sdpo_loss(student, mb, old["old"], stored_support(s["ids"], s["values"]), cfg)[0].backward()
        optimizer.step()


def step_shipped(student, teacher, optimizer, minibatches: list[dict], k: int, cfg: RlrtConfig) -> None:
    """(b) as shipped, top-K in the old-log-prob pass: old pass with θ_old's top-K, one teacher pass stored, the
    updates."""
    olds = [old_pass(student, mb, k) for mb in minibatches]
    stored = [stored_teacher_pass(teacher, mb, old["ids"]) for mb, old in zip(minibatches, olds)]
    stored_updates(student, optimizer, minibatches, olds, stored, cfg)


def step_select_pass(student, teacher, optimizer, minibatches: list[dict], k: int, cfg: RlrtConfig) -> None:
    """(b) with a separate select pass (our first version, not shipped): verl's old pass unchanged, then the teacher
    pass = a select forward of θ_old (its top-K ids) and the teacher's gather, then the updates."""
    olds = [old_pass(student, mb) for mb in minibatches]
    stored = [stored_teacher_pass(teacher, mb, select_pass(student, mb, k)) for mb in minibatches]
    stored_updates(student, optimizer, minibatches, olds, stored, cfg)


#: (JSON name, printed label, step) of each timed variant; the first is the reference of the ratios.
STEPS = (("exact", "(a) exact: live top-K, teacher per micro-batch", step_exact),
         ("shipped", "(b) as shipped: top-K in the old-log-prob pass", step_shipped),
         ("select_pass", "(b) with a separate select pass (our first version, not shipped)", step_select_pass))


def cost(student, teacher, minibatches: list[dict], k: int, cfg: RlrtConfig, repeats: int) -> dict:
    """Seconds per step of (a), (b) as shipped and (b) with a separate select pass, the ratios of both (b) to (a),
    and (b)'s stored bytes per token and per paper-scale step."""
    out = {}
    for name, _, step in STEPS:
        model = copy.deepcopy(student)  # all start from θ₀; the timed steps move only this copy
        optimizer = torch.optim.AdamW(model.parameters(), lr=COST_LR, weight_decay=WEIGHT_DECAY)
        out[f"{name}_s"], out[f"{name}_min_s"] = timed(lambda: step(model, teacher, optimizer, minibatches, k, cfg),
                                                       repeats)
    for name, _, _ in STEPS[1:]:
        out[f"{name}_ratio"] = out[f"{name}_s"] / out["exact_s"]
        out[f"{name}_min_ratio"] = out[f"{name}_min_s"] / out["exact_min_s"]
    out["bytes_per_token"] = 4 * k + 2 * k + 4 * EXTRA_FLOAT32_PER_TOKEN
    out["gb_per_step"] = {length: PAPER_ROLLOUTS * length * out["bytes_per_token"] / 1e9
                          for length in PAPER_RESPONSE_LENGTHS}
    return out


# ---------------------------------------------------------------------------------------------- report

def print_result(result: dict) -> None:
    size, sweep, c = result["size"], result["support"], result["cost"]
    print(f"machine: {result['machine']}")
    print(f"model: {result['params']:,} parameters, hidden {size['spec']['hidden_size']}, {size['spec']['num_layers']} "
          f"layers, vocab {size['spec']['vocab_size']}, logit scale {result['logit_scale']}; K = {result['k']}, "
          f"B = {size['rows']} (2 mini-batches), prompt {size['prompt']} (+{size['privileged']} privileged for the "
          f"teacher), response {size['response']}; seed {result['seed']}")
    print(f"theta_old on mini-batch 2: mean entropy {sweep['entropy']:.3f} nats, "
          f"mean top-K mass {sweep['topk_mass']:.4f}")
    print(f"mini-batch 1 at theta_old, |g_a - g_b| / |g_a|: "
          f"mb1_grad_rel_diff_fp32 {sweep['mb1_grad_rel_diff_fp32']:.3e}  "
          f"mb1_grad_rel_diff_bf16 {sweep['mb1_grad_rel_diff_bf16']:.3e}")
    print(f"tokens whose top-K set from a separate select pass (our first version) equals the one taken in the "
          f"old-log-prob pass: select_ids_same {sweep['select_ids_same']:.4f}")
    print("mini-batch 2 after one AdamW step on mini-batch 1 ((a) exact live ids vs (b) stored theta_old ids):")
    print(f"{'lr':>8} {'overlap':>9} {'loss_rel':>10} {'grad_rel':>10} {'grad_rel_fp32':>13}")
    for row in sweep["lrs"]:
        print(f"{row['lr']:>8.0e} {row['overlap']:>9.4f} {row['loss_rel']:>10.3e} {row['grad_rel']:>10.3e} "
              f"{row['grad_rel_fp32']:>13.3e}")
    print(f"cost of one step, wall s (median of {size['repeats']}, min in brackets):")
    width = max(len(label) for _, label, _ in STEPS)
    for name, label, _ in STEPS:
        line = f"  {label:<{width}}  {name + '_s':<13} {c[name + '_s']:.3f} ({c[name + '_min_s']:.3f})"
        if name != STEPS[0][0]:
            line += f"  {name}_ratio to (a) {c[name + '_ratio']:.3f} ({c[name + '_min_ratio']:.3f})"
        print(line)
    print(f"stored bytes per response token: {c['bytes_per_token']}; per step at {PAPER_ROLLOUTS} rollouts: "
          + ", ".join(f"{length} tokens {gb:.2f} GB" for length, gb in c["gb_per_step"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CI mode: hidden 64, vocab 512, K = 16, B = 4, 1 repeat")
    parser.add_argument("--k", type=int, default=None, help="top-K (default rlrt.distill_topk = 100; 16 with --tiny)")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="learning rates of the sweep")
    parser.add_argument("--logit-scale", type=float, default=20.0,
                        help="multiplies the final norm gain, hence the logits (20: ~1.4 nats of entropy at full size)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per method (default 5; 1 with --tiny)")
    parser.add_argument("--seed", type=int, default=0, help="model weights, prompts and sampled responses")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = TINY if args.tiny else FULL
    size = BenchSize(**{**asdict(base), "spec": TinyModelSpec(**{**asdict(base.spec), "seed": args.seed}),
                        "k": args.k or base.k, "repeats": args.repeats or base.repeats})
    if not 0 < size.k <= size.spec.vocab_size:
        parser.error(f"--k must be in [1, vocab {size.spec.vocab_size}], got {size.k}")
    cfg = RlrtConfig()

    student, teacher = build_models(size.spec, args.logit_scale)
    torch.manual_seed(args.seed)  # prompts, prefixes and generate's sampling
    minibatches = sample_minibatches(student, size)
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "size": asdict(size), "k": size.k, "seed": args.seed, "logit_scale": args.logit_scale,
        "params": sum(p.numel() for p in student.parameters()),
        "support": support_sweep(student, teacher, minibatches, args.lrs, size.k, cfg),
        "cost": cost(student, teacher, minibatches, size.k, cfg, size.repeats),
    }
    print_result(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
