"""Cross-entropy kernel against PyTorch's cross-entropy on upcast logits (Hugging Face's loss)."""

from __future__ import annotations

import pytest
import torch
from lookout_kernels.cross_entropy import cross_entropy, cross_entropy_reference, cross_entropy_rows_inplace

from ._util import DEVICE, DTYPES, REL_TOL, assert_rel, gpu_only, randn, saved_for_backward, to64

# (tokens, vocab): odd counts; 40000 > one 32768-wide block, so the online softmax loops.
# GPU: the Llama-3 vocabulary.
SHAPES = [(1, 7), (9, 500), (3, 40000)] + gpu_only((4096, 128256), (8191, 128256))


# fp32 gradients: softmax - onehot cancels near p = 1, and PyTorch's own fp32 cross-entropy lands at up
# to 3.6e-5 from float64 on these inputs; other dtypes: the common bars.
GRAD_TOL = {**REL_TOL, torch.float32: 1e-4}


def labels_for(n: int, vocab: int, gen, ignore_every: int = 3, ignore_index: int = -100) -> torch.Tensor:
    labels = torch.randint(0, vocab, (n,), generator=gen, device=gen.device)
    labels[1::ignore_every] = ignore_index
    return labels


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_and_backward_match_reference(shape, dtype, reduction, gen):
    n, vocab = shape
    logits = randn(n, vocab, gen=gen, dtype=dtype, scale=4.0).requires_grad_()
    labels = labels_for(n, vocab, gen)
    loss = cross_entropy(logits, labels, reduction=reduction)
    dloss = randn(*loss.shape, gen=gen) if reduction == "none" else torch.tensor(1.7, device=DEVICE)
    # fp16 training scales the loss (GradScaler) so gradients stay inside fp16's normal range: at a 128k
    # vocabulary softmax values are ~1e-5 and a mean divides them by thousands. Scale so the largest
    # gradient is about 2**10, and compare after unscaling.
    per_row = dloss.abs().max() / ((labels != -100).sum() if reduction == "mean" else 1)
    loss_scale = (1024 / per_row).item() if dtype == torch.float16 else 1.0
    loss.backward(dloss * loss_scale)
    l64 = to64(logits)
    ref = torch.nn.functional.cross_entropy(l64, labels, reduction=reduction)
    ref.backward(dloss.double() * loss_scale)
    assert loss.dtype == torch.float32 and logits.grad.dtype == dtype
    # The loss is accumulated in fp32 whatever the logits dtype. loss = lse - logit[label] cancels when the
    # label dominates, so the bar is absolute (1e-5 per row, a few fp32 ulps of lse) as well as relative.
    atol = 1e-5 * (n if reduction == "sum" else 1)
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-5, atol=atol)
    assert_rel(logits.grad.double() / loss_scale, l64.grad / loss_scale, GRAD_TOL[dtype], "d logits")


def test_ignored_rows_get_zero_gradient_and_custom_ignore_index_works(gen):
    logits = randn(6, 50, gen=gen).requires_grad_()
    labels = torch.tensor([3, 0, 7, 0, 49, 0], device=DEVICE)  # 0 is the ignore index here
    loss = cross_entropy(logits, labels, ignore_index=0)
    loss.backward()
    assert_rel(loss, cross_entropy_reference(logits, labels, ignore_index=0), 1e-6, "loss")
    assert torch.equal(logits.grad[1::2], torch.zeros_like(logits.grad[1::2]))


def test_all_rows_ignored_gives_nan_mean_like_pytorch(gen):
    logits = randn(4, 30, gen=gen).requires_grad_()
    labels = torch.full((4,), -100, device=DEVICE)
    loss = cross_entropy(logits, labels)
    assert torch.isnan(loss) and torch.isnan(cross_entropy_reference(logits, labels))
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits.grad))


def test_extreme_logits_stay_finite(gen):
    logits = randn(5, 300, gen=gen, scale=1000.0).requires_grad_()
    labels = labels_for(5, 300, gen)
    loss = cross_entropy(logits, labels)
    loss.backward()
    l64 = to64(logits)
    torch.nn.functional.cross_entropy(l64, labels).backward()
    assert_rel(loss, cross_entropy_reference(l64, labels), 1e-5, "loss")
    assert_rel(logits.grad, l64.grad, GRAD_TOL[torch.float32], "d logits")


@pytest.mark.parametrize("block", [64, 128])
def test_in_place_row_kernel_with_several_blocks_per_row(block, gen):
    n, vocab = 7, 500
    logits = randn(n, vocab, gen=gen, dtype=torch.bfloat16, scale=3.0)
    labels = labels_for(n, vocab, gen)
    valid = (labels != -100).sum()
    scale = (1.0 / valid.float()).reshape(1)
    loss_rows = torch.empty(n, device=DEVICE)
    l64 = to64(logits)
    torch.nn.functional.cross_entropy(l64, labels).backward()
    cross_entropy_rows_inplace(logits, labels, loss_rows, scale, block=block)
    ref_rows = torch.nn.functional.cross_entropy(l64.detach(), labels, reduction="none")
    assert_rel(loss_rows, ref_rows, 1e-5, "row losses")
    assert_rel(logits, l64.grad, REL_TOL[torch.bfloat16], "gradient written over the logits")


def test_saves_no_copy_of_the_logits(gen):
    logits = randn(8, 100, gen=gen, dtype=torch.bfloat16).requires_grad_()
    labels = labels_for(8, 100, gen)
    with saved_for_backward() as saved:
        cross_entropy(logits, labels)
    # the caller's logits + labels + one fp32 lse per row + the valid count
    assert saved[0] == logits.numel() * 2 + labels.numel() * 8 + 8 * 4 + 4


def test_label_out_of_range_is_an_error(gen):
    logits = randn(3, 10, gen=gen)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\).*\[10\]"):
        cross_entropy(logits, torch.tensor([1, 10, 2], device=DEVICE))
