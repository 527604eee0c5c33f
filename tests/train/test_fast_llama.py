"""FastLlama: 4-bit loading, LoRA + kernel patches that compute what HF computes, standard adapters."""

from __future__ import annotations

import json

import pytest
import torch

from lookout.train import ops
from lookout.train.chat_data import collate, tokenize_conversation
from lookout.train.fast_llama import ALL_PROJECTIONS, BaseModelNotFoundError, FastLlama, UnsupportedModelError
from lookout.train.patch import is_patched, unpatch_llama


def _batch(tok, conversations):
    return collate([tokenize_conversation(tok, m) for m in conversations[:2]], tok.pad_token_id)


def _lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_missing_or_incomplete_base_is_a_clear_error(tmp_path):
    with pytest.raises(BaseModelNotFoundError, match="not found"):
        FastLlama.from_pretrained(tmp_path / "no_such_model", max_seq_length=128)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelNotFoundError, match="no config.json"):
        FastLlama.from_pretrained(tmp_path / "empty", max_seq_length=128)
    with pytest.raises(BaseModelNotFoundError, match="not found locally"):
        FastLlama.from_pretrained("no-such-org/no-such-model", max_seq_length=128)


def test_non_llama_and_too_long_sequences_are_refused(tiny_base, tmp_path):
    config = json.loads((tiny_base / "config.json").read_text())
    other = tmp_path / "gpt2ish"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        FastLlama.from_pretrained(other, max_seq_length=128)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        FastLlama.from_pretrained(tiny_base, max_seq_length=config["max_position_embeddings"] + 1)


def test_loads_nf4_with_double_quant_and_a_padded_tokenizer(tiny_base):
    model, tok = FastLlama.from_pretrained(tiny_base, max_seq_length=200)
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert weight.quant_state.quant_type == "nf4" and weight.quant_state.nested  # double quantization
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.model_max_length == 200
    assert model.max_seq_length == 200 and model.config.use_cache is False


def test_get_peft_model_patches_every_block_and_uses_the_kernel_entry_points(make_model, conversations, monkeypatch):
    model, tok = make_model(use_kernels=True)
    assert is_patched(model)
    assert sorted({n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}) == sorted(ALL_PROJECTIONS)
    calls: dict[str, int] = {}
    for name in ("rms_norm", "apply_rope", "lora_qkv", "lora_o", "lora_mlp", "fused_linear_cross_entropy"):
        original = getattr(ops, name)

        def counted(*a, _name=name, _fn=original, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(*a, **k)

        monkeypatch.setattr(ops, name, counted)
    out = model(**_batch(tok, conversations))
    out.loss.backward()
    layers = model.config.num_hidden_layers
    assert calls == {"rms_norm": 2 * layers + 1, "apply_rope": layers, "lora_qkv": layers, "lora_o": layers,
                     "lora_mlp": layers, "fused_linear_cross_entropy": 1}
    assert out.logits is None  # training never builds the logits


@pytest.mark.parametrize("kernels_present", [True, False], ids=["lookout_kernels", "fallback"])
def test_patched_loss_and_gradients_match_hugging_face(make_model, conversations, monkeypatch, kernels_present):
    if not kernels_present:  # as if lookout_kernels were not installed yet
        monkeypatch.setattr(ops, "kernel", lambda module, name: None)
    patched, tok = make_model(use_kernels=True)
    reference, _ = make_model(use_kernels=False)
    batch = _batch(tok, conversations)
    n = int((batch["labels"][:, 1:] != -100).sum())
    losses = []
    for model in (patched, reference):
        loss = model(**batch, num_items_in_batch=n + 5).loss  # HF semantics: sum / num_items_in_batch
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    g_patched, g_ref = _lora_grads(patched), _lora_grads(reference)
    assert g_patched.keys() == g_ref.keys()
    for k in g_ref:
        torch.testing.assert_close(g_patched[k], g_ref[k], rtol=1e-4, atol=1e-7, msg=k)
    assert any(g.abs().sum() > 0 for g in g_ref.values())


@pytest.mark.parametrize("mode", [True, "offload"])
def test_gradient_checkpointing_gives_the_same_gradients(make_model, conversations, mode):
    plain, tok = make_model(gradient_checkpointing=False)
    ckpt, _ = make_model(gradient_checkpointing=mode)
    assert all(layer.gradient_checkpointing for layer in ckpt.base_model.model.model.layers)
    batch = _batch(tok, conversations)
    for model in (plain, ckpt):
        model.train()
        model(**batch).loss.backward()
    g_plain, g_ckpt = _lora_grads(plain), _lora_grads(ckpt)
    for k in g_plain:  # includes layer 0, whose input (a frozen embedding) does not require grad
        torch.testing.assert_close(g_ckpt[k], g_plain[k], rtol=1e-5, atol=1e-7, msg=k)


def test_offload_checkpointing_replays_dropout_exactly(make_model, conversations):
    plain, tok = make_model(gradient_checkpointing=False, lora_dropout=0.3)
    ckpt, _ = make_model(gradient_checkpointing="offload", lora_dropout=0.3)
    batch = _batch(tok, conversations)
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(7)
        model(**batch).loss.backward()
    g_plain, g_ckpt = _lora_grads(plain), _lora_grads(ckpt)
    for k in g_plain:
        torch.testing.assert_close(g_ckpt[k], g_plain[k], rtol=1e-5, atol=1e-7, msg=k)


def test_adapter_saved_from_patched_model_loads_on_an_unpatched_model(make_model, conversations, tiny_base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from lookout.agent.nf4_cpu import repair_cpu_nf4

    model, tok = make_model()
    with torch.no_grad():  # make the adapter non-trivial (lora_B starts at zero)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and sorted(saved["target_modules"]) == sorted(ALL_PROJECTIONS)

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_base, quantization_config=quant, device_map={"": "cpu"})
    repair_cpu_nf4(base)  # as the planner loads it: fp32 math on every CPU (not bitsandbytes' bf16 path)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert not is_patched(loaded)
    batch = _batch(tok, conversations)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        ours = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        theirs = loaded(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    with loaded.disable_adapter(), torch.no_grad():
        without = loaded(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    assert (without - theirs).abs().max() > 1e-3  # the adapter really changes the outputs


def test_unpatch_restores_hugging_face_forwards(make_model, conversations):
    model, tok = make_model()
    assert unpatch_llama(model) > 0 and not is_patched(model)
    out = model(**_batch(tok, conversations))
    assert out.logits is not None  # HF's own head builds the logits again


def test_patched_model_generates_with_the_kv_cache(make_model, tokenizer):
    model, tok = make_model()
    reference, _ = make_model(use_kernels=False)
    prompt = tok.apply_chat_template([{"role": "user", "content": "find the red cup"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    outs = []
    for m in (model, reference):
        FastLlama.for_inference(m)
        with torch.no_grad():
            outs.append(m.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id))
    assert torch.equal(outs[0], outs[1]) and outs[0].shape[1] == prompt["input_ids"].shape[1] + 6


def test_offload_links_each_layer_to_the_one_below_and_frees_host_copies(make_model, conversations, monkeypatch):
    from lookout.train import checkpointing

    model, tok = make_model(gradient_checkpointing="offload")
    saved = []
    original = checkpointing._OffloadedLayer.forward

    def recording(ctx, *args):
        out = original(ctx, *args)
        saved.append(ctx.saved)
        return out

    monkeypatch.setattr(checkpointing._OffloadedLayer, "forward", staticmethod(recording))
    loss = model(**_batch(tok, conversations)).loss
    assert len(saved) == model.config.num_hidden_layers
    assert saved[0].below is None and saved[1].below is saved[0]  # backward of layer 1 prefetches layer 0's input
    loss.backward()
    assert all(s.host is None for s in saved)  # nothing kept after backward
