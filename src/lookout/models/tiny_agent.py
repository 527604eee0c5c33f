"""The tiny agent base model: a few-million-parameter Llama trained from scratch on the dataset, on a CPU.

It is a plain `LlamaForCausalLM` saved with `save_pretrained` (safetensors), so the planner loads
it like Llama 3.2 (in 4-bit or not) and the QLoRA trainer can put an adapter on it. The loop is
plain PyTorch with the loss on assistant tokens only. Every row begins with the same system
prompt (most of its tokens), so each step runs that prefix once and lets every row of the batch
attend to its keys and values (gradients flow through the shared prefix): the same loss as
running each row in full, at a third of the cost.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100


@dataclass
class TinyAgentConfig:
    """Shape and training settings; the defaults build the committed models/tiny/agent-base."""

    vocab_size: int = 3072
    hidden_size: int = 96
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    steps: int = 6000
    batch_size: int = 64
    lr: float = 6e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 60
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2  # the 2-core machine: 1.5x one thread's speed, when nothing else runs beside it
    device: str = "cpu"  # or "cuda": the same recipe in minutes (bench/tiny_agent_recipes.py, make models on a GPU)

    def llama_config(self, tokenizer: Any) -> Any:
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta, tie_word_embeddings=True, hidden_act="silu", rms_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, architectures=["LlamaForCausalLM"],
        )


@dataclass
class EncodedRows:
    """Token ids of the shared prefix and, per row, the rest with labels on assistant tokens."""

    prefix: list[int]
    rest: list[list[int]]
    labels: list[list[int]]

    @property
    def n_label_tokens(self) -> int:
        return sum(sum(1 for x in lab if x != IGNORE_INDEX) for lab in self.labels)


ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
END_OF_TURN = "<|eot_id|>"


def encode_rows(tokenizer: Any, rows: list[dict[str, Any]], check_rows: int = 8) -> EncodedRows:
    """Tokenize with the chat template; split off the system-prompt prefix every row shares.

    Rendering is the template's; only the text after the shared prefix is tokenized, in one batch
    (special tokens split the text, so this gives the same ids as tokenizing it whole). Labels are
    the assistant contents and their <|eot_id|>; the first `check_rows` rows are checked against
    `apply_chat_template(..., return_assistant_tokens_mask=True)`.
    """
    if not rows:
        raise ValueError("no rows to encode")
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    system = rows[0]["messages"][:1]
    prefix_text = tokenizer.apply_chat_template(system, tokenize=False)
    prefix = tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
    rests = []
    for text in texts:
        if not text.startswith(prefix_text):
            raise ValueError("every row must start with the same system prompt (rows from different robots?)")
        rests.append(text[len(prefix_text):])
    enc = tokenizer(rests, add_special_tokens=False, return_offsets_mapping=True)
    rest_ids, labels = [], []
    for text, ids, offsets in zip(rests, enc["input_ids"], enc["offset_mapping"], strict=True):
        spans = []
        at = text.find(ASSISTANT_HEADER)
        while at >= 0:
            begin = at + len(ASSISTANT_HEADER)
            stop = text.index(END_OF_TURN, begin) + len(END_OF_TURN)
            spans.append((begin, stop))
            at = text.find(ASSISTANT_HEADER, stop)
        lab = [i if any(b <= lo and hi <= e for b, e in spans) and hi > lo else IGNORE_INDEX
               for i, (lo, hi) in zip(ids, offsets, strict=True)]
        rest_ids.append(list(ids))
        labels.append(lab)
    for k, row in enumerate(rows[:check_rows]):
        ref = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(ref["input_ids"]), list(ref["assistant_masks"])
        if ids != prefix + rest_ids[k] or [m == 1 for m in mask[len(prefix):]] != [x != IGNORE_INDEX for x in labels[k]]:
            raise ValueError("fast chat encoding disagrees with apply_chat_template (a changed chat template?)")
    return EncodedRows(prefix, rest_ids, labels)


def batches(data: EncodedRows, batch_size: int, seed: int) -> Any:
    """Endless shuffled batches; rows of similar length share a batch (less padding)."""
    rng = random.Random(seed)
    order = list(range(len(data.rest)))
    while True:
        rng.shuffle(order)
        chunk = batch_size * 32
        for start in range(0, len(order), chunk):
            block = sorted(order[start:start + chunk], key=lambda i: len(data.rest[i]))
            groups = [block[i:i + batch_size] for i in range(0, len(block), batch_size)]
            rng.shuffle(groups)
            yield from groups


def collate(data: EncodedRows, index: list[int], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(data.rest[i]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    labels = torch.full((len(index), width), IGNORE_INDEX, dtype=torch.long)
    for row, i in enumerate(index):
        ids[row, : len(data.rest[i])] = torch.tensor(data.rest[i])
        labels[row, : len(data.labels[i])] = torch.tensor(data.labels[i])
    return ids, labels


def prefix_shared_loss(model: Any, prefix: Any, ids: Any, labels: Any) -> Any:
    """Mean cross-entropy on labelled tokens, running the shared prefix once for the whole batch."""
    import torch
    import torch.nn.functional as F

    out = model.model(input_ids=prefix, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(ids.shape[0])
    p = prefix.shape[1]
    positions = torch.arange(p, p + ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    hidden = model.model(input_ids=ids, past_key_values=cache, position_ids=positions, use_cache=True).last_hidden_state
    # hidden[:, t] predicts ids[:, t + 1]; the first rest token (a header) is never labelled.
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    logits = model.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def full_sequence_loss(model: Any, prefix: Any, ids: Any, labels: Any) -> Any:
    """The same loss computed the plain way (each row in full); the reference for tests."""
    import torch
    import torch.nn.functional as F

    full = torch.cat([prefix.expand(ids.shape[0], -1), ids], dim=1)
    hidden = model.model(input_ids=full).last_hidden_state[:, prefix.shape[1]:]
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    logits = model.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def teacher_forced_exact(model: Any, data: EncodedRows, pad_id: int, batch_size: int = 64) -> float:
    """Share of assistant turns whose every token is the model's argmax given the gold prefix.

    That is exactly the share greedy decoding would reproduce word for word, at the cost of one
    forward pass: a cheap progress measure during training.
    """
    import torch

    was_training = model.training
    model.eval()
    prefix = torch.tensor(data.prefix, device=model.device).unsqueeze(0)
    ok = total = 0
    with torch.no_grad():
        for start in range(0, len(data.rest), batch_size):
            index = list(range(start, min(start + batch_size, len(data.rest))))
            ids, labels = (t.to(model.device) for t in collate(data, index, pad_id))
            cache = model.model(input_ids=prefix, use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(index))
            p = prefix.shape[1]
            positions = torch.arange(p, p + ids.shape[1], device=ids.device).unsqueeze(0).expand(len(index), -1)
            hidden = model.model(input_ids=ids, past_key_values=cache, position_ids=positions).last_hidden_state
            right = (model.lm_head(hidden[:, :-1]).argmax(-1) == labels[:, 1:]).cpu()
            labelled = (labels[:, 1:] != IGNORE_INDEX).cpu()
            for r in range(len(index)):
                # each run of labelled positions is one assistant turn
                runs = torch.diff(labelled[r].int(), prepend=torch.zeros(1, dtype=torch.int))
                starts = (runs == 1).nonzero().flatten().tolist()
                ends = (runs == -1).nonzero().flatten().tolist() + [labelled.shape[1]]
                for a in starts:
                    b = next(e for e in ends if e > a)
                    total += 1
                    ok += bool(right[r, a:b].all())
    model.train(was_training)
    return ok / max(1, total)


@dataclass
class TrainStats:
    steps: int
    seconds: float
    tokens_per_s: float
    final_loss: float
    losses: list[float] = field(default_factory=list)
    n_params: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    val_exact: list[tuple[int, float]] = field(default_factory=list)  # (step, teacher-forced exact on val)


def lr_at(step: int, cfg: TinyAgentConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_tiny_agent(rows: list[dict[str, Any]], tokenizer: Any, cfg: TinyAgentConfig | None = None,
                     show_progress: bool = True, val_rows: list[dict[str, Any]] | None = None,
                     eval_every: int = 0, log: Any = None) -> tuple[Any, TrainStats]:
    """Train a LlamaForCausalLM from scratch on the rows; returns the model (eval mode) and stats."""
    import torch

    cfg = cfg or TinyAgentConfig()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(rows, tokenizer, cfg, show_progress, val_rows, eval_every, log)
    finally:
        torch.set_num_threads(threads_before)


def _train(rows: list[dict[str, Any]], tokenizer: Any, cfg: TinyAgentConfig, show_progress: bool,
           val_rows: list[dict[str, Any]] | None, eval_every: int, log: Any) -> tuple[Any, TrainStats]:
    import torch
    from tqdm import tqdm
    from transformers import LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    data = encode_rows(tokenizer, rows)
    val = encode_rows(tokenizer, val_rows) if val_rows else None
    val_exact: list[tuple[int, float]] = []
    model = LlamaForCausalLM(cfg.llama_config(tokenizer)).to(cfg.device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    prefix = torch.tensor(data.prefix, device=cfg.device).unsqueeze(0)
    stream = batches(data, cfg.batch_size, cfg.seed)
    losses: list[float] = []
    tokens = 0
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="training tiny agent", unit="step", disable=not show_progress)
    for step in bar:
        ids, labels = (t.to(cfg.device) for t in collate(data, next(stream), tokenizer.pad_token_id))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = prefix_shared_loss(model, prefix, ids, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        tokens += int(ids.numel()) + prefix.shape[1]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.4f}")
        if val is not None and eval_every and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            t_eval = time.perf_counter()
            val_exact.append((step + 1, teacher_forced_exact(model, val, tokenizer.pad_token_id)))
            start += time.perf_counter() - t_eval  # evaluation time is not training time
            if log:
                log(f"step {step + 1}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f}, "
                    f"val teacher-forced exact {val_exact[-1][1]:.3f}, {time.perf_counter() - start:.0f} s")
    seconds = time.perf_counter() - start
    model.eval().to("cpu")
    n_params = sum(p.numel() for p in model.parameters())
    stats = TrainStats(cfg.steps, seconds, tokens / seconds, sum(losses[-20:]) / len(losses[-20:]), losses,
                       n_params, asdict(cfg), val_exact)
    return model, stats


def save_agent_base(model: Any, tokenizer: Any, out_dir: str | Path) -> None:
    """save_pretrained (safetensors) with the tokenizer and a generation config that stops at <|eot_id|>."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
