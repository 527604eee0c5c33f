"""Benchmark lookout_kernels against the PyTorch reference and torch.compile of it, at Llama-3.2-1B shapes.

For each op: forward+backward time, peak memory above the inputs, and for memory-bound ops the achieved
bandwidth against a device-to-device copy measured in the same run. Prints a table, writes JSON to --out.

Time is GPU time: forward+backward captured in a CUDA graph (10 iterations, each after a 256 MiB write
that evicts L2), replayed, minus the same graph of evictions alone. Eager time (triton.testing.do_bench,
median, L2 flushed) is reported too: for small ops it is bound by Python and launch overhead, which a
training step hides behind the GPU queue. Where capture is impossible the eager time is used (marked *).

    python bench/kernels.py --out bench_kernels.json            # on a CUDA GPU
    python bench/kernels.py --tokens 2048 --ops rms_norm swiglu  # a quicker subset
    python bench/kernels.py --smoke                              # tiny shapes, CPU interpreter: checks the script

Bytes counted for bandwidth are the fewest an implementation must move (each input read once, each
output written once, forward plus backward); see `moved_bytes` of each case.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))  # run from a bare checkout too

from lookout_kernels import cross_entropy as ce  # noqa: E402
from lookout_kernels import fused_linear_ce as flce  # noqa: E402
from lookout_kernels import lora, nf4  # noqa: E402
from lookout_kernels import rms_norm as rn  # noqa: E402
from lookout_kernels import rope as rp  # noqa: E402
from lookout_kernels import swiglu as sg  # noqa: E402

# Llama-3.2-1B
HIDDEN, INTER, VOCAB, HEADS, KV_HEADS, HEAD_DIM, RANK, SEQ = 2048, 8192, 128256, 32, 8, 64, 16, 2048
DTYPE = torch.bfloat16
DEV = "cuda"


def use_smoke_shapes() -> None:
    """Tiny shapes on the CPU (Triton interpreter): exercises every code path of this script in seconds."""
    global HIDDEN, INTER, VOCAB, HEADS, KV_HEADS, HEAD_DIM, RANK, SEQ, DEV
    HIDDEN, INTER, VOCAB, HEADS, KV_HEADS, HEAD_DIM, RANK, SEQ, DEV = 64, 128, 1000, 4, 2, 16, 4, 16, "cpu"


@dataclass
class Case:
    """One op: `make()` builds fresh inputs; each impl maps inputs to a callable doing forward+backward."""

    name: str
    shape: str
    make: Callable[[], dict]
    ours: Callable[[dict], Callable[[], object]]
    reference: Callable[[dict], Callable[[], object]]
    compiled: Callable[[dict], Callable[[], object]] | None
    moved_bytes: int | None = None  # for memory-bound ops
    extra: dict[str, Callable[[dict], Callable[[], object]]] = field(default_factory=dict)


def grad_of(fn, inputs, grads):
    """forward + backward without accumulating into .grad (no extra adds in the timing)."""

    def run():
        outs = fn()
        outs = outs if isinstance(outs, tuple) else (outs,)
        return torch.autograd.grad(outs, inputs, grads)

    return run


def randn(*shape, dtype=DTYPE, scale=1.0, requires_grad=False):
    return (torch.randn(*shape, device=DEV, dtype=torch.float32) * scale).to(dtype).requires_grad_(requires_grad)


# ------------------------------------------------------------------------------------------- cases


def case_rms_norm(tokens: int) -> Case:
    def make():
        return {"x": randn(tokens, HIDDEN, requires_grad=True), "w": 1 + randn(HIDDEN, scale=0.1),
                "dy": randn(tokens, HIDDEN)}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["x"], d["w"], 1e-5), [d["x"]], [d["dy"]])

    return Case("rms_norm (frozen weight)", f"{tokens}x{HIDDEN}", make, impl(rn.rms_norm), impl(rn.rms_norm_reference),
                impl(torch.compile(rn.rms_norm_reference)), moved_bytes=5 * tokens * HIDDEN * 2 + 2 * tokens * 4)


def case_rms_norm_trained(tokens: int) -> Case:
    def make():
        return {"x": randn(tokens, HIDDEN, requires_grad=True), "w": (1 + randn(HIDDEN, scale=0.1)).requires_grad_(),
                "dy": randn(tokens, HIDDEN)}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["x"], d["w"], 1e-5), [d["x"], d["w"]], [d["dy"]])

    return Case("rms_norm (trained weight)", f"{tokens}x{HIDDEN}", make, impl(rn.rms_norm),
                impl(rn.rms_norm_reference), impl(torch.compile(rn.rms_norm_reference)),
                moved_bytes=5 * tokens * HIDDEN * 2 + 2 * tokens * 4)


def case_rope(tokens: int) -> Case:
    seq = SEQ
    batch = tokens // seq

    def make():
        q = randn(batch, seq, HEADS, HEAD_DIM).transpose(1, 2).requires_grad_()  # HF's layout
        k = randn(batch, seq, KV_HEADS, HEAD_DIM).transpose(1, 2).requires_grad_()
        pos = torch.randint(0, 8192, (batch, seq), device=DEV).float()  # packed: per-token positions
        inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device=DEV).float() / HEAD_DIM))
        emb = torch.cat([pos[..., None] * inv, pos[..., None] * inv], -1)
        return {"q": q, "k": k, "cos": emb.cos().to(DTYPE), "sin": emb.sin().to(DTYPE),
                "dq": torch.randn_like(q), "dk": torch.randn_like(k)}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["q"], d["k"], d["cos"], d["sin"]), [d["q"], d["k"]], [d["dq"], d["dk"]])

    qk = tokens * (HEADS + KV_HEADS) * HEAD_DIM * 2
    cs = 2 * tokens * HEAD_DIM * 2
    return Case("rope q+k", f"{batch}x{seq} tok, {HEADS}/{KV_HEADS}x{HEAD_DIM}", make, impl(rp.apply_rope),
                impl(rp.apply_rope_reference), impl(torch.compile(rp.apply_rope_reference)),
                moved_bytes=4 * qk + 2 * cs)


def case_swiglu(tokens: int) -> Case:
    def make():
        return {"a": randn(tokens, INTER, requires_grad=True), "b": randn(tokens, INTER, requires_grad=True),
                "dc": randn(tokens, INTER)}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["a"], d["b"]), [d["a"], d["b"]], [d["dc"]])

    return Case("swiglu", f"{tokens}x{INTER}", make, impl(sg.swiglu), impl(sg.swiglu_reference),
                impl(torch.compile(sg.swiglu_reference)), moved_bytes=8 * tokens * INTER * 2)


def case_cross_entropy(tokens: int) -> Case:
    def make():
        labels = torch.randint(0, VOCAB, (tokens,), device=DEV)
        labels[::5] = -100
        return {"logits": randn(tokens, VOCAB, scale=2.0, requires_grad=True), "labels": labels}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["logits"], d["labels"]), [d["logits"]], None)

    return Case("cross_entropy", f"{tokens}x{VOCAB}", make, impl(ce.cross_entropy), impl(ce.cross_entropy_reference),
                impl(torch.compile(ce.cross_entropy_reference)), moved_bytes=3 * tokens * VOCAB * 2)


def case_fused_linear_ce(tokens: int) -> Case:
    def make():
        labels = torch.randint(0, VOCAB, (tokens,), device=DEV)
        labels[::5] = -100
        return {"h": randn(tokens, HIDDEN, requires_grad=True), "w": randn(VOCAB, HIDDEN, scale=HIDDEN**-0.5),
                "labels": labels}

    def impl(f):
        return lambda d: grad_of(lambda: f(d["h"], d["w"], d["labels"]), [d["h"]], None)

    def chunked(rows):
        return impl(lambda h, w, y: flce.fused_linear_cross_entropy(h, w, y, chunk_size=rows))

    default = flce.default_chunk_size(tokens, VOCAB)
    return Case(f"fused_linear_ce (frozen head, chunk {default})", f"{tokens}x{HIDDEN} -> {VOCAB}", make,
                impl(flce.fused_linear_cross_entropy), impl(flce.fused_linear_cross_entropy_reference),
                impl(torch.compile(flce.fused_linear_cross_entropy_reference)),
                extra={f"ours, chunk {default // 2}": chunked(default // 2), f"ours, chunk {default * 2}": chunked(default * 2)})


def _quantized(out_f, in_f):
    w = randn(out_f, in_f, scale=in_f**-0.5)
    try:
        import bitsandbytes.functional as bnbf

        return bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    except Exception:  # no bitsandbytes here: same layout from our own quantizer
        return nf4.quantize_nf4(w)


def case_nf4(rows: int, cols: int) -> Case:
    def make():
        packed, state = _quantized(rows, cols)
        return {"packed": packed, "state": state, "out": torch.empty(rows, cols, device=DEV, dtype=DTYPE)}

    extra = {}
    try:
        import bitsandbytes.functional as bnbf

        extra["bitsandbytes"] = lambda d: (lambda: bnbf.dequantize_4bit(d["packed"], d["state"], quant_type="nf4"))
    except Exception:
        pass
    n = rows * cols
    return Case("nf4 dequant (fwd only)", f"{rows}x{cols}", make,
                lambda d: (lambda: nf4.dequantize_nf4(d["packed"], d["state"], out=d["out"])),
                lambda d: (lambda: nf4.dequantize_nf4_reference(d["packed"], d["state"])),
                lambda d: (lambda f=torch.compile(nf4.dequantize_nf4_reference): f(d["packed"], d["state"])),
                moved_bytes=n // 2 + n // 64 + n * 2, extra=extra)


def _proj(out_f, in_f):
    packed, state = _quantized(out_f, in_f)
    a = randn(RANK, in_f, dtype=torch.float32, scale=in_f**-0.5, requires_grad=True)
    b = randn(out_f, RANK, dtype=torch.float32, scale=RANK**-0.5, requires_grad=True)
    return lora.LoraWeights(packed, state, a, b, 2.0)


def case_lora_mlp(tokens: int) -> Case:
    def make():
        ps = [_proj(INTER, HIDDEN), _proj(INTER, HIDDEN), _proj(HIDDEN, INTER)]
        return {"x": randn(tokens, HIDDEN, requires_grad=True), "ps": ps, "dy": randn(tokens, HIDDEN)}

    def impl(f):
        def build(d):
            params = [d["x"]] + [t for p in d["ps"] for t in (p.lora_A, p.lora_B)]
            return grad_of(lambda: f(d["x"], *d["ps"]), params, [d["dy"]])

        return build

    return Case("lora_mlp (NF4 base, r=16)", f"{tokens}x{HIDDEN}, inter {INTER}", make, impl(lora.lora_mlp),
                impl(lora.lora_mlp_reference), impl(torch.compile(lora.lora_mlp_reference)))


def case_lora_qkv(tokens: int) -> Case:
    kv = KV_HEADS * HEAD_DIM

    def make():
        ps = [_proj(HIDDEN, HIDDEN), _proj(kv, HIDDEN), _proj(kv, HIDDEN)]
        return {"x": randn(tokens, HIDDEN, requires_grad=True), "ps": ps,
                "dys": [randn(tokens, HIDDEN), randn(tokens, kv), randn(tokens, kv)]}

    def impl(f):
        def build(d):
            params = [d["x"]] + [t for p in d["ps"] for t in (p.lora_A, p.lora_B)]
            return grad_of(lambda: f(d["x"], *d["ps"]), params, d["dys"])

        return build

    return Case("lora_qkv (NF4 base, r=16)", f"{tokens}x{HIDDEN} -> {HIDDEN}+{kv}+{kv}", make, impl(lora.lora_qkv),
                impl(lora.lora_qkv_reference), impl(torch.compile(lora.lora_qkv_reference)))


# ------------------------------------------------------------------------------------------- measuring


def median_ms(fn: Callable[[], object], rep_ms: int) -> float:
    if DEV == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=10, rep=rep_ms, return_mode="median")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second (the ceiling for memory-bound ops)."""
    src = torch.empty(2**30 // 2 if DEV == "cuda" else 2**20, dtype=DTYPE, device=DEV).normal_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), 200)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def graph_ms(fn: Callable[[], object], reps: int = 10) -> float:
    """GPU time of fn per call: `reps` calls captured in a CUDA graph, each behind an L2 eviction, minus a
    graph of the evictions alone."""
    flush = torch.empty(256 * 2**20, dtype=torch.int8, device=DEV)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up on the capture stream, as torch.cuda.graph's docs ask
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    with_fn, alone = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(with_fn):
        for _ in range(reps):
            flush.zero_()
            fn()
    with torch.cuda.graph(alone):
        for _ in range(reps):
            flush.zero_()

    def replay_ms(graph) -> float:
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(7):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[3]

    ms = (replay_ms(with_fn) - replay_ms(alone)) / reps
    del with_fn, alone
    return ms


def measure(build: Callable[[dict], Callable[[], object]], make: Callable[[], dict], rep_ms: int) -> dict:
    sync()
    if DEV == "cuda":
        torch.cuda.empty_cache()
    d = make()
    fn = build(d)
    t0 = time.perf_counter()
    fn()  # warm-up: compiles Triton / inductor kernels
    sync()
    first_s = time.perf_counter() - t0
    peak = None
    if DEV == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    eager = median_ms(fn, rep_ms)
    graph, graph_error = None, None
    if DEV == "cuda":
        try:
            graph = graph_ms(fn)
        except Exception as exc:  # e.g. an op that syncs with the host
            graph_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            torch.cuda.synchronize()
    del d, fn
    torch.cuda.empty_cache() if DEV == "cuda" else None
    return {"ms": graph if graph is not None else eager, "timing": "graph" if graph is not None else "eager",
            "eager_ms": eager, "graph_ms": graph, "graph_error": graph_error, "peak_mib": peak,
            "first_call_s": first_s}


CASES = {
    "rms_norm": lambda t: [case_rms_norm(t), case_rms_norm_trained(t)],
    "rope": lambda t: [case_rope(t)],
    "swiglu": lambda t: [case_swiglu(t)],
    "cross_entropy": lambda t: [case_cross_entropy(t)],
    "fused_linear_ce": lambda t: [case_fused_linear_ce(t)],
    "nf4": lambda t: [case_nf4(INTER, HIDDEN), case_nf4(4 * INTER, 4 * HIDDEN)],  # a 1B MLP weight; a big one
    "lora_mlp": lambda t: [case_lora_mlp(t)],
    "lora_qkv": lambda t: [case_lora_qkv(t)],
}


def fmt(v, spec=".2f", dash="-"):
    return dash if v is None else format(v, spec)


def nf4_sweep(copy_bps: float, out: Path | None) -> int:
    """Time `dequantize_nf4` under every launch setting (same method as the table) to choose `launch_for`."""
    settings = [nf4.NF4Launch(flat, block, warps) for flat in (False, True) for block in (512, 1024, 2048, 4096, 8192)
                for warps in ((1, 2, 4, 8) if block <= 2048 else (4, 8, 16))]
    results = []
    # a 1B MLP weight, K/V and Q/O projections, a big matrix
    for rows_, cols in [(INTER, HIDDEN), (HIDDEN // 4, HIDDEN), (HIDDEN, HIDDEN), (4 * INTER, 4 * HIDDEN)]:
        n = rows_ * cols
        moved = n // 2 + n // 64 + n * 2
        packed, state = _quantized(rows_, cols)
        buf = torch.empty(rows_, cols, device=DEV, dtype=DTYPE)
        expected = nf4.dequantize_nf4_reference(packed, state)
        timed = []
        for cfg in settings:
            got = nf4.dequantize_nf4(packed, state, out=buf, launch=cfg)
            assert torch.equal(got, expected), cfg
            call = functools.partial(nf4.dequantize_nf4, packed, state, out=buf, launch=cfg)
            ms = graph_ms(call) if DEV == "cuda" else median_ms(call, 10)
            timed.append((ms, cfg))
        timed.sort(key=lambda t: t[0])
        chosen = nf4.launch_for(packed.numel())
        chosen_ms = next(ms for ms, c in timed if c == chosen)
        print(f"\nnf4 {rows_}x{cols} ({moved / 1e6:.1f} MB moved): launch_for -> {chosen}: {chosen_ms * 1e3:.1f} us, "
              f"{100 * moved / (chosen_ms * 1e-3) / copy_bps:.0f}% of copy", flush=True)
        for ms, cfg in timed[:6] + timed[-2:]:
            print(f"  {'flat' if cfg.flat else 'rows'} block {cfg.block_bytes:5d} warps {cfg.num_warps:2d}: "
                  f"{ms * 1e3:7.1f} us  {100 * moved / (ms * 1e-3) / copy_bps:4.0f}% of copy", flush=True)
        results.append({"shape": [rows_, cols], "moved_bytes": moved, "chosen": chosen.__dict__, "chosen_ms": chosen_ms,
                        "timings": [{"ms": ms, **cfg.__dict__} for ms, cfg in timed]})
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"copy_GBps": copy_bps / 1e9, "nf4_sweep": results}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write results as JSON here")
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step (default 16k)")
    ap.add_argument("--ops", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--rep-ms", type=int, default=200, help="timing budget per measurement (ms)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU under Triton's interpreter")
    ap.add_argument("--nf4-sweep", action="store_true",
                    help="only time every NF4 launch setting (layout, block, warps) per weight shape and exit")
    args = ap.parse_args()
    if args.smoke:
        import os

        os.environ["TRITON_INTERPRET"] = "1"
        use_smoke_shapes()
        args.tokens = min(args.tokens, 2 * SEQ)
    elif not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA GPU (the kernels' CPU path is the reference itself); "
              "--smoke checks the script on the CPU", file=sys.stderr)
        return 2

    torch.manual_seed(0)
    copy_bps = copy_bandwidth()
    meta = {"gpu": torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke)", "torch": torch.__version__,
            "triton": __import__("triton").__version__, "python": platform.python_version(),
            "tokens": args.tokens, "dtype": str(DTYPE), "copy_GBps": copy_bps / 1e9}
    print(f"# {meta['gpu']}  torch {meta['torch']}  triton {meta['triton']}  "
          f"copy bandwidth {copy_bps / 1e9:.0f} GB/s (read+write)", flush=True)
    if args.nf4_sweep:
        return nf4_sweep(copy_bps, args.out)
    rows = []
    for op in args.ops:
        for case in CASES[op](args.tokens):
            row = {"op": case.name, "shape": case.shape}
            impls = {"ours": case.ours, "reference": case.reference}
            if case.compiled is not None and not args.no_compile:
                impls["compiled"] = case.compiled
            impls.update(case.extra)
            for label, build in impls.items():
                try:
                    row[label] = measure(build, case.make, args.rep_ms)
                except Exception as exc:  # an OOM or a compile failure of a baseline is a result too
                    row[label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
                    torch.cuda.empty_cache()
            ours = row["ours"]
            if case.moved_bytes and "ms" in ours:
                row["GBps"] = case.moved_bytes / (ours["ms"] * 1e-3) / 1e9
                row["pct_copy"] = 100 * case.moved_bytes / (ours["ms"] * 1e-3) / copy_bps
            rows.append(row)
            print(json.dumps(row), flush=True)

    def get(r, k, f):
        return r.get(k, {}).get(f)

    def ms_cell(r, k):
        v = get(r, k, "ms")
        return "-" if v is None else f"{v:.3f}" + ("" if get(r, k, "timing") == "graph" else "*")

    def ratio(a, b, spec=".2f"):
        return "-" if not a or not b else format(a / b, spec) + "x"

    header = ("| op | shape | ours ms | ours eager ms | ref ms | compiled ms | speedup vs ref | vs compiled "
              "| ours MiB | ref MiB | compiled MiB | ref/ours mem | GB/s | % of copy |")
    lines = [header, "|" + "---|" * 14]
    for r in rows:
        o, rf, c = get(r, "ours", "ms"), get(r, "reference", "ms"), get(r, "compiled", "ms")
        om, rm, cm = get(r, "ours", "peak_mib"), get(r, "reference", "peak_mib"), get(r, "compiled", "peak_mib")
        lines.append(
            f"| {r['op']} | {r['shape']} | {ms_cell(r, 'ours')} | {fmt(get(r, 'ours', 'eager_ms'), '.3f')} "
            f"| {ms_cell(r, 'reference')} | {ms_cell(r, 'compiled')} | {ratio(rf, o)} | {ratio(c, o)} "
            f"| {fmt(om, '.0f')} | {fmt(rm, '.0f')} | {fmt(cm, '.0f')} | {ratio(rm, om, '.1f')} "
            f"| {fmt(r.get('GBps'), '.0f')} | {fmt(r.get('pct_copy'), '.0f')} |")
        for k, v in r.items():
            if k in ("op", "shape", "ours", "GBps", "pct_copy") or not isinstance(v, dict):
                continue
            if "error" in v:
                lines.append(f"|  | {k} failed: {v['error']} |" + " |" * 12)
            elif k not in ("reference", "compiled"):
                mem = f", {v['peak_mib']:.0f} MiB" if v.get("peak_mib") is not None else ""
                rel = f" ({v['ms'] / o:.2f}x ours)" if o else ""
                lines.append(f"|  | {k}: {ms_cell(r, k)} ms{mem}{rel} |" + " |" * 12)
    table = "\n".join(lines)
    print(f"\n{meta['gpu']}, torch {meta['torch']}, triton {meta['triton']}, {DTYPE}, {args.tokens} tokens; "
          f"times are forward+backward GPU time per call (CUDA graph replay, L2 evicted; * = eager, no graph), "
          f"eager = do_bench median; memory is peak above the inputs; copy bandwidth {copy_bps / 1e9:.0f} GB/s\n")
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
