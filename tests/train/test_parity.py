"""Parity: the patched model trains like unpatched transformers + peft QLoRA, step for step.

Bars (stated in lookout/train/parity.py): loss curves within LOSS_RTOL (1e-2) relative at each of
30 steps; first-step lora_B gradients per tensor within GRAD_RTOL_FP32 (1e-4, CPU fp32) or, in bf16 on
a GPU, median within 2**-6 and worst within 4 x 2**-6; lora_A's first gradients exactly zero on both
sides (lora_B starts at zero); LoRA weights after 30 steps within BF16_RTOL (decisive on the CPU;
reported on a GPU, where Adam amplifies bf16 rounding of near-zero gradients).

CPU by default (tiny Llama). On a GPU, the same test at Llama-3.2-1B width:
    LOOKOUT_PARITY_SHAPE=llama-3.2-1b python -m pytest tests/train/test_parity.py -q
(or `python -m lookout.train.parity --shape llama-3.2-1b` where pytest is not installed).
"""

from __future__ import annotations

import os

from lookout.train.parity import (
    BF16_RTOL,
    GRAD_RTOL_BF16_MAX,
    GRAD_RTOL_BF16_MEDIAN,
    GRAD_RTOL_FP32,
    LOSS_RTOL,
    NOISE_FACTOR,
    run_parity,
)


def test_patched_training_matches_hugging_face_peft_for_30_steps(tmp_path):
    shape = os.environ.get("LOOKOUT_PARITY_SHAPE", "tiny")
    res = run_parity(shape=shape, steps=30, workdir=tmp_path)
    assert res["init_lora_max_abs_diff"] == 0.0  # same seed, same LoRA initialisation
    patched, reference = res["loss_patched"], res["loss_reference"]
    assert len(patched) == len(reference) == 30
    for step, (a, b) in enumerate(zip(patched, reference, strict=True), 1):
        assert abs(a - b) <= LOSS_RTOL * abs(b), f"step {step}: patched {a} vs reference {b}"
    assert reference[-1] < reference[0] - 0.1  # both really trained
    layers = 2 if shape == "tiny" else 16
    assert res["lora_tensors"] == 7 * 2 * layers  # A and B of 7 projections per layer
    grads = res["grad_lora_B"]
    assert grads["n"] == 7 * layers
    assert res["grad_lora_A_max_abs"] == 0.0  # lora_B = 0 at the start, so no gradient reaches lora_A
    if res["device"] == "cpu":  # fp32: first gradients and final weights agree tightly
        assert grads["max"] <= GRAD_RTOL_FP32, grads
        assert res["weights"]["max"] <= BF16_RTOL, res["weights"]
        assert res["lora_max_elem_err_of_scale"] <= BF16_RTOL
    else:  # bf16: the direct bars, or no further from an fp32 run than HF's own bf16 path (parity.py)
        nf = res["noise_floor"]
        direct = grads["median"] <= GRAD_RTOL_BF16_MEDIAN and grads["max"] <= GRAD_RTOL_BF16_MAX
        assert direct or nf["grad_ok"], (grads, nf)
        for q in ("median", "max"):
            assert direct or nf["grad_lora_B_patched"][q] <= NOISE_FACTOR * nf["grad_lora_B_reference"][q]
    assert res["passed"]
    print(f"parity {shape}: loss max rel diff {res['loss_max_rel_diff']:.2e}, first-step lora_B grads "
          f"{grads}, weights {res['weights']}")


def test_fp32_truth_run_measures_both_paths(tmp_path):
    """The noise-floor run: on the CPU the reference already computes in fp32, so the reference and the
    fp32 truth are the same computation (error exactly 0) and the patched model is within fp32 rounding."""
    res = run_parity(shape="tiny", steps=3, workdir=tmp_path, fp32_truth=True)
    nf = res["noise_floor"]
    assert nf["grad_lora_B_reference"]["max"] == 0.0 and nf["weights_reference"]["max"] == 0.0
    assert nf["loss_reference_max_rel"] == 0.0
    assert nf["grad_lora_B_patched"]["max"] <= GRAD_RTOL_FP32 and nf["weights_patched"]["n"] == 28
    assert nf["loss_patched_max_rel"] <= LOSS_RTOL
