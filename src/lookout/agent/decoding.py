"""Fast greedy decoding for Llama-family models: static KV cache, prefix reuse, CUDA graphs.

`transformers.generate` spends most of a short plan's time in Python and kernel launches (on an
H200 a 1B model decodes at about 50 tokens/s that way, far below what memory bandwidth allows).
`StaticLlamaDecoder` runs the model's own modules (4-bit bitsandbytes layers, PEFT LoRA layers and
all) with a preallocated KV cache, so one decode step has fixed shapes and fixed addresses; on a
GPU that step is captured once as a CUDA graph and replayed per token. The KV cache of the last
prompt is kept: the system prompt and dialogue history shared with the next command are not
recomputed. The grammar's bitmask is filled on the CPU while the GPU runs the step.

`HFDecoder` is the plain fallback (any causal LM, `DynamicCache`), used for models that are not
plain Llama and as the reference in tests. Both expose `start`, `pick`, `advance`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FAST_MODEL_TYPES = ("llama",)


def masked_choice(logits: torch.Tensor, bitmask: torch.Tensor | None, shifts: torch.Tensor) -> torch.Tensor:
    """[token, probability]: the greedy choice under `bitmask` and its probability among the allowed tokens.

    The probability is the model's confidence in that choice once the grammar has ruled out the
    rest (1.0 where the grammar allows one token); both come back in one tensor, one host sync.
    """
    logits = logits.float()
    if bitmask is not None:
        vocab = logits.shape[-1]
        allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).view(bitmask.shape[0], -1)[:, :vocab].bool()
        logits = logits.masked_fill(~allowed, float("-inf"))
    best, token = logits.max(-1)
    prob = (best - torch.logsumexp(logits, -1)).exp()
    return torch.stack([token.float(), prob]).view(-1)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def unwrap_causal_lm(model: Any) -> Any:
    """The LlamaForCausalLM inside a PEFT model (its layers carry the LoRA adapters in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class StaticLlamaDecoder:
    """Greedy decoder with a static KV cache for one sequence; CUDA graphs on GPU."""

    def __init__(self, model: Any, max_len: int, *, cuda_graphs: bool = True) -> None:
        self.lm = unwrap_causal_lm(model)
        cfg = self.lm.config
        if cfg.model_type not in FAST_MODEL_TYPES:
            raise ValueError(f"StaticLlamaDecoder supports {FAST_MODEL_TYPES}, not {cfg.model_type!r}")
        self.device = self.lm.get_input_embeddings().weight.device
        self.dtype = self.lm.get_input_embeddings().weight.dtype
        if self.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            self.dtype = torch.float32
        self.max_len = max_len  # the last slot is scratch space for graph warm-up
        first = self.lm.model.layers[0].self_attn
        self.head_dim = first.head_dim
        self.n_kv = cfg.num_key_value_heads
        self.groups = first.num_key_value_groups
        shape = (1, self.n_kv, max_len, self.head_dim)
        n_layers = len(self.lm.model.layers)
        self.k_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(n_layers)]
        self.v_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(n_layers)]
        self.cached_ids: list[int] = []  # tokens whose keys/values sit at positions 0..len-1
        self.shifts = torch.arange(32, dtype=torch.int32, device=self.device)
        # Static buffers of one decode step (graph inputs/outputs).
        self.ids_buf = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self.pos_buf = torch.zeros((1,), dtype=torch.long, device=self.device)
        self.mask_buf = torch.zeros((1, 1, 1, max_len), dtype=torch.bool, device=self.device)
        self.bitmask_dev: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.last_prob = 1.0  # the probability of the last pick among the tokens the grammar allowed
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_logits: torch.Tensor | None = None
        self.mode = "eager"
        self._rope = self.lm.model.rotary_emb
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self._apply_rope = apply_rotary_pos_emb

    # --- the model ---------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, kv_len: int) -> torch.Tensor:
        """Run tokens `ids` (1 x q) at positions `pos` (q), attending to cache slots [0, kv_len)."""
        model = self.lm.model
        h = model.embed_tokens(ids).to(self.dtype)
        cos, sin = self._rope(h, pos.unsqueeze(0))
        q_len = ids.shape[1]
        for i, layer in enumerate(model.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(1, q_len, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(1, q_len, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(1, q_len, -1, self.head_dim).transpose(1, 2)
            q, k = self._apply_rope(q, k, cos, sin)
            self.k_cache[i].index_copy_(2, pos, k.to(self.dtype))
            self.v_cache[i].index_copy_(2, pos, v.to(self.dtype))
            keys = self.k_cache[i][:, :, :kv_len]
            vals = self.v_cache[i][:, :, :kv_len]
            q = q.to(self.dtype)
            if q_len == 1 and self.groups > 1:
                # One new token: the query heads that share a KV head become that head's "queries"
                # (same mask for all), so grouped-query attention needs no copy of the cache.
                out = F.scaled_dot_product_attention(q.view(1, self.n_kv, self.groups, self.head_dim), keys, vals,
                                                     attn_mask=mask, scale=attn.scaling)
                out = out.reshape(1, 1, -1)
            else:
                if self.groups > 1:
                    keys = keys.repeat_interleave(self.groups, dim=1)
                    vals = vals.repeat_interleave(self.groups, dim=1)
                out = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, scale=attn.scaling)
                out = out.transpose(1, 2).reshape(1, q_len, -1)
            h = h + attn.o_proj(out).to(self.dtype)
            h = h + layer.mlp(layer.post_attention_layernorm(h)).to(self.dtype)
        h = model.norm(h[:, -1:])
        return self.lm.lm_head(h)[:, -1].float()

    def _decode_body(self) -> torch.Tensor:
        self.mask_buf.index_fill_(-1, self.pos_buf, True)
        return self._forward(self.ids_buf, self.pos_buf, self.mask_buf, self.max_len)

    # --- CUDA graph ----------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget the captured graph and cached prefix (call after switching adapters)."""
        self.graph = None
        self.graph_logits = None
        self.cached_ids = []

    def forget_prefix(self) -> None:
        """Prefill the next prompt from scratch (benchmarks measure cold prompts with this)."""
        self.cached_ids = []

    def _capture(self) -> None:
        scratch = self.max_len - 1
        saved_mask = self.mask_buf.clone()
        try:
            self.pos_buf.fill_(scratch)
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._decode_body()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._decode_body()
            self.graph, self.graph_logits, self.mode = graph, out, "cuda_graph"
        except Exception as exc:  # noqa: BLE001 - any capture failure: keep decoding eagerly
            log.warning("CUDA graph capture failed (%s): decoding without graphs", exc)
            self.use_graphs, self.graph, self.mode = False, None, "eager"
            torch.cuda.synchronize(self.device)
        finally:
            self.mask_buf.copy_(saved_mask)
            self.mask_buf[..., scratch] = False

    # --- the decoding API ----------------------------------------------------------------
    def capacity(self) -> int:
        return self.max_len - 1

    def start(self, prompt_ids: list[int]) -> None:
        """Prefill the prompt (reusing the cached common prefix); logits for the first new token."""
        n = len(prompt_ids)
        if n == 0 or n >= self.capacity():
            raise ValueError(f"prompt of {n} tokens does not fit the cache of {self.capacity()} tokens")
        common = min(_common_prefix(self.cached_ids, prompt_ids), n - 1)
        new = torch.tensor([prompt_ids[common:]], dtype=torch.long, device=self.device)
        pos = torch.arange(common, n, device=self.device)
        keys = torch.arange(n, device=self.device)
        mask = (keys.unsqueeze(0) <= pos.unsqueeze(1)).view(1, 1, n - common, n)
        self.logits = self._forward(new, pos, mask, n)
        self.cached_ids = list(prompt_ids)
        self.mask_buf.zero_()
        self.mask_buf[..., :n] = True

    def pick(self, bitmask: torch.Tensor | None) -> int:
        """Choose the next token greedily under `bitmask` (CPU, from xgrammar) and stage it."""
        mask = None
        if bitmask is not None:
            if self.device.type == "cpu":
                mask = bitmask
            else:
                if self.bitmask_dev is None or self.bitmask_dev.shape != bitmask.shape:
                    self.bitmask_dev = torch.empty(bitmask.shape, dtype=bitmask.dtype, device=self.device)
                self.bitmask_dev.copy_(bitmask, non_blocking=True)
                mask = self.bitmask_dev
        choice = masked_choice(self.logits, mask, self.shifts)
        self.ids_buf.copy_(choice[:1].long().view(1, 1))
        token, self.last_prob = choice.tolist()  # the one host sync per token: the grammar needs the choice
        return int(token)

    def advance(self, token_id: int) -> None:
        """Run the staged token (the one `pick` returned) through the model, asynchronously on GPU."""
        p = len(self.cached_ids)
        if p >= self.capacity():
            raise ValueError(f"generation exceeds the cache of {self.capacity()} tokens")
        if self.use_graphs and self.graph is None:
            self._capture()
        self.pos_buf.fill_(p)
        if self.graph is not None:
            self.graph.replay()
            self.logits = self.graph_logits
        else:
            self.logits = self._decode_body()
        self.cached_ids.append(token_id)


class HFDecoder:
    """Reference/fallback decoder: the model's own forward with a DynamicCache, one token at a time."""

    mode = "hf_dynamic_cache"

    def __init__(self, model: Any, max_len: int) -> None:
        self.model = model
        self.max_len = max_len
        self.device = unwrap_causal_lm(model).get_input_embeddings().weight.device
        self.shifts = torch.arange(32, dtype=torch.int32, device=self.device)
        self.cache: Any = None
        self.logits: torch.Tensor | None = None
        self.last_prob = 1.0  # the probability of the last pick among the tokens the grammar allowed
        self.length = 0

    def invalidate(self) -> None:
        self.cache = None

    def forget_prefix(self) -> None:
        """No prefix is kept between prompts here."""

    def capacity(self) -> int:
        return self.max_len - 1

    @torch.no_grad()
    def start(self, prompt_ids: list[int]) -> None:
        from transformers import DynamicCache

        if not prompt_ids or len(prompt_ids) >= self.capacity():
            raise ValueError(f"prompt of {len(prompt_ids)} tokens does not fit {self.capacity()} tokens")
        self.cache = DynamicCache()
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[:, -1].float()
        self.length = len(prompt_ids)

    def pick(self, bitmask: torch.Tensor | None) -> int:
        mask = None if bitmask is None else bitmask.to(self.device, non_blocking=True)
        token, self.last_prob = masked_choice(self.logits, mask, self.shifts).tolist()
        return int(token)

    @torch.no_grad()
    def advance(self, token_id: int) -> None:
        if self.length >= self.capacity():
            raise ValueError(f"generation exceeds {self.capacity()} tokens")
        ids = torch.tensor([[token_id]], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[:, -1].float()
        self.length += 1


def make_decoder(model: Any, max_len: int, *, fast: bool = True, cuda_graphs: bool = True) -> Any:
    """The fast static decoder for Llama models, else the HF fallback."""
    if fast and unwrap_causal_lm(model).config.model_type in FAST_MODEL_TYPES:
        return StaticLlamaDecoder(model, max_len, cuda_graphs=cuda_graphs)
    return HFDecoder(model, max_len)
