"""Parity: 30 steps of the patched model track unpatched transformers + peft QLoRA step for step.

CPU by default (tiny Llama). On a GPU, the same test at Llama-3.2-1B width:
    LOOKOUT_PARITY_SHAPE=llama-3.2-1b python -m pytest tests/train/test_parity.py -q
(or `python -m lookout.train.parity --shape llama-3.2-1b` where pytest is not installed).
"""

from __future__ import annotations

import os

from lookout.train.parity import BF16_RTOL, LOSS_RTOL, run_parity


def test_patched_training_matches_hugging_face_peft_for_30_steps(tmp_path):
    shape = os.environ.get("LOOKOUT_PARITY_SHAPE", "tiny")
    res = run_parity(shape=shape, steps=30, workdir=tmp_path)
    assert res["init_lora_max_abs_diff"] == 0.0  # same seed, same LoRA initialisation
    patched, reference = res["loss_patched"], res["loss_reference"]
    assert len(patched) == len(reference) == 30
    for step, (a, b) in enumerate(zip(patched, reference, strict=True), 1):
        assert abs(a - b) <= LOSS_RTOL * abs(b), f"step {step}: patched {a} vs reference {b}"
    assert reference[-1] < reference[0] - 0.1  # both really trained
    assert res["lora_tensors"] == 7 * 2 * (2 if shape == "tiny" else 16)  # A and B of 7 projections per layer
    assert res["lora_max_rel_fro_err"] <= BF16_RTOL, res["lora_worst_tensor"]
    if res["device"] == "cpu":  # fp32 on the CPU: every element within bf16's relative tolerance of its tensor
        assert res["lora_max_elem_err_of_scale"] <= BF16_RTOL
    print(f"parity {shape}: loss max rel diff {res['loss_max_rel_diff']:.2e}, LoRA rel error "
          f"{res['lora_max_rel_fro_err']:.2e}, max element {res['lora_max_elem_err_of_scale']:.2e}")
