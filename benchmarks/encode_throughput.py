"""Encode throughput: walloc-cdl's fast encode vs walloc 1.2.1, CPU and (when present) CUDA; JSON on stdout.

CPU (``--threads`` 2): a batch of 4×3×256² and one 768×512 RGB image (float input), RGB 16x codec,
plus stereo audio (J = 8); every candidate is timed round-robin in the same run, medians, ratios
against walloc.  CUDA: 128×3×256² uint8 on the GPU in fp32 / TF32 / bf16 / fp16 for each 2D method,
torch.compile of the bf16 path, walloc fp32 and bf16-autocast, agreement of rounded latents with a
float64 reference, and the encode time as a fraction of a ResNet-50 bf16 training step on the
12×32×32 latents (timm resnet50, stem = 3×3 stride-1 conv from 12 channels, no max-pool,
channels_last, AdamW).  Random codec weights, scaled so latents spread like a trained codec's.

    python benchmarks/encode_throughput.py                 # CPU (+ GPU when CUDA is available)
    python benchmarks/encode_throughput.py --skip-cpu      # GPU only
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))     # fastencode_variants, beside this file

from walloc_cdl import Codec1D, Codec2D  # noqa: E402
from walloc_cdl.codec.fast import METHODS_2D, TRITON_METHODS, fast_encode  # noqa: E402
from walloc_cdl.codec.fast.cpu import _encode_1d  # noqa: E402
from fastencode_variants import VARIANTS, encode_variant  # noqa: E402

ALL_2D = METHODS_2D + VARIANTS
ALL_TRITON = TRITON_METHODS + ("triton",)

RGB16X = dict(channels=3, J=3, Ne=None, Nd=32, latent_dim=12, latent_bits=8, lightweight_encode=True)
STEREO = dict(channels=2, J=8, Ne=None, Nd=216, latent_dim=108, latent_bits=8, lightweight_encode=True,
              post_filter=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def import_walloc():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import walloc.walloc as W
        return W
    except Exception as e:  # not installed, or pkg_resources missing
        log(f"walloc not importable: {type(e).__name__}: {e}")
        return None


def natural_like(shape, generator=None, device="cpu") -> torch.Tensor:
    """uint8 images with image-like spectra: smooth fields at three scales plus a little noise."""
    B, C, H, W = shape
    x = torch.zeros(B, C, H, W, device=device)
    for f, a in ((32, 0.6), (8, 0.3), (2, 0.1)):
        small = torch.rand(B, C, max(H // f, 1), max(W // f, 1), generator=generator, device=device)
        x += a * F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def make_codec(cls, cfg, calib: torch.Tensor):
    """Random codec whose linear encoder is scaled so latents have σ ≈ the companding scale (as trained)."""
    torch.manual_seed(0)
    codec = cls(**cfg).eval().to(calib.device)
    with torch.no_grad():
        x = calib.float() / 255 - 0.5 if calib.dtype == torch.uint8 else calib
        z = codec.encoder[0](codec.wavelet_analysis(x, J=codec.J))
        codec.encoder[0].weight.mul_(codec.encoder[1].scale / z.std())
    return codec


def walloc_twin(W, ours, cls_name, cfg):
    if W is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(W, cls_name)(**cfg)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref.eval().to(next(ours.parameters()).device)


def walloc_encode(ref, x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """walloc 1.2.1's encode path as its README uses it: wavelet_analysis, encoder[0:2], round."""
    if x.dtype == torch.uint8:
        x = x.float() / 255 - 0.5
    z = ref.encoder[0:2](ref.wavelet_analysis(x, J=ref.J))
    return torch.round(z) if quantize else z


def reference_encode(codec, x: torch.Tensor) -> torch.Tensor:
    """walloc-cdl's reference path (per-level transform + 1×1 conv)."""
    if x.dtype == torch.uint8:
        x = x.to(next(codec.parameters()).dtype) / 255 - 0.5
    return torch.round(codec.encoder[0:2](codec.wavelet_analysis(x, J=codec.J)))


def agreement(z: torch.Tensor, z_ref_real: torch.Tensor) -> dict:
    """Share of rounded latents equal to the rounded float64 reference; how far misses are from a .5 tie.

    ``z``: unrounded latents of the candidate (so max_abs_err is the real error, in latent units).
    """
    r = torch.round(z_ref_real)
    off = torch.round(z.double()) != r
    out = {"agree": round(1 - off.double().mean().item(), 6), "max_abs_err": float((z.double() - z_ref_real).abs().max())}
    if off.any():
        frac = z_ref_real[off] - torch.floor(z_ref_real[off])
        out["max_tie_distance_of_misses"] = round(float((frac - 0.5).abs().max()), 4)
    return out


# -- timing -------------------------------------------------------------------------------------------
def time_cpu_round_robin(fns: dict, reps: int) -> tuple[dict, dict]:
    """(median, min) seconds of each candidate, timed in turn so load changes hit all alike."""
    times = {k: [] for k in fns}
    with torch.no_grad():
        for f in fns.values():
            f()
        for _ in range(reps):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, {k: min(v) for k, v in times.items()}


def time_cuda(fn, reps: int = 20, warmup: int = 3, grad: bool = False) -> float:
    """Median seconds per call (CUDA events around each call after warm-up); ``grad`` for training steps."""
    with torch.set_grad_enabled(grad):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)


# -- CPU ------------------------------------------------------------------------------------------------
def bench_cpu(W, reps: int) -> dict:
    out = {}
    g = torch.Generator().manual_seed(1)
    inputs = {"batch_4x3x256x256": natural_like((4, 3, 256, 256), g),
              "image_768x512": natural_like((1, 3, 512, 768), g)}
    codec = make_codec(Codec2D, RGB16X, inputs["batch_4x3x256x256"])
    ref = walloc_twin(W, codec, "Codec2D", RGB16X)
    for name, u in inputs.items():
        x = u.float() / 255 - 0.5
        fns = {f"fast_{m}": functools.partial(encode_variant, codec, x, m, True) for m in ALL_2D
               if m not in ALL_TRITON}
        fns["codec.encode"] = functools.partial(codec.encode, x)
        fns["walloc_cdl_reference_path"] = functools.partial(reference_encode, codec, x)
        if ref is not None:
            fns["walloc_1.2.1"] = functools.partial(walloc_encode, ref, x)
        log(f"cpu {name}: {list(fns)}")
        t, tmin = time_cpu_round_robin(fns, reps)
        px = u.shape[0] * u.shape[2] * u.shape[3]
        res = {k: {"median_s": v, "min_s": tmin[k], "MP_per_s": px / v / 1e6} for k, v in t.items()}
        if ref is not None:
            for k in res:
                res[k]["speedup_vs_walloc"] = t["walloc_1.2.1"] / t[k]
            with torch.no_grad():
                z_w = walloc_encode(ref, x)
                z_ref = codec.double().encoder[0:2](codec.wavelet_analysis(x.double(), J=codec.J))
                codec.float()
                res["agreement_fast_fp32_vs_float64"] = agreement(codec.encode(x, quantize=False), z_ref)
                res["agreement_walloc_fp32_vs_float64"] = agreement(walloc_encode(ref, x, False), z_ref)
                res["fast_fp32_equal_to_walloc_share"] = float((codec.encode(x) == z_w).double().mean())
        out[name] = res
    out["stereo_J8"] = bench_audio_cpu(W, reps)
    return out


def bench_audio_cpu(W, reps: int) -> dict:
    g = torch.Generator().manual_seed(2)
    T = 2 ** 18
    x = (torch.rand(1, 2, T, generator=g) - 0.5) * 0.5
    codec = make_codec(Codec1D, STEREO, x)
    ref = walloc_twin(W, codec, "Codec1D", STEREO)
    fns = {"codec.encode": functools.partial(codec.encode, x),
           "walloc_cdl_reference_path": functools.partial(reference_encode, codec, x)}
    if ref is not None:
        fns["walloc_1.2.1"] = functools.partial(walloc_encode, ref, x)
    t, tmin = time_cpu_round_robin(fns, reps)
    res = {k: {"median_s": v, "min_s": tmin[k], "Msamples_per_s": x.numel() / v / 1e6} for k, v in t.items()}
    if ref is not None:
        for k in res:
            res[k]["speedup_vs_walloc"] = t["walloc_1.2.1"] / t[k]
    with torch.no_grad():
        z_ref = codec.double().encoder[0:2](codec.wavelet_analysis(x.double(), J=codec.J))
        codec.float()
        res["agreement_fast_fp32_vs_float64"] = agreement(codec.encode(x, quantize=False), z_ref)
    return res


# -- GPU ------------------------------------------------------------------------------------------------
def resnet50_step_time(batch: int) -> float:
    import timm
    model = timm.create_model("resnet50", num_classes=1000)
    model.conv1 = nn.Conv2d(12, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model = model.cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    z = torch.randn(batch, 12, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(z), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return time_cuda(step, reps=15, warmup=5, grad=True)


def bench_gpu(W, batch: int, reps: int, compile_: bool) -> dict:
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    u = natural_like((batch, 3, 256, 256), g, device=dev)
    codec = make_codec(Codec2D, RGB16X, u[:8]).to(dev)
    px = batch * 256 * 256
    res: dict = {"input": f"{batch}x3x256x256 uint8 on GPU", "GP_per_s_counts": "pixels (B*H*W) per second"}
    with torch.no_grad():
        z64 = codec.double().encoder[0:2](codec.wavelet_analysis(u[:16].double() / 255 - 0.5, J=codec.J))
        codec.float()
    precisions = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
                  "bf16": (torch.bfloat16, True), "fp16": (torch.float16, True)}
    timings = {}
    for m in ALL_2D:
        for pname, (dt, tf32) in precisions.items():
            if (m == "dense" and pname in ("fp32", "fp16")) or (m in ALL_TRITON and pname in ("tf32", "fp16")):
                continue   # dense is slow; triton maps float32 to tf32x3 and bf16/fp16 to tf32
            fn = functools.partial(encode_variant, codec, u, m, True, dt)
            key = f"fast_{m}_{pname}"
            try:
                with torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32), _matmul_tf32(tf32):
                    t = time_cuda(fn, reps)
                    with torch.no_grad():
                        agr = agreement(encode_variant(codec, u[:16], m, False, dt), z64)
            except Exception as e:   # a kernel that does not compile here is reported, not fatal
                res[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
                log(key, res[key])
                continue
            timings[key] = t
            res[key] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9, **agr}
            log(key, res[key])
    res["kernel_profile_sep_fp16"] = kernel_profile(functools.partial(fast_encode, codec, u, dtype=torch.float16))
    res["kernel_profile_sep_fp32"] = kernel_profile(functools.partial(fast_encode, codec, u))
    res["kernel_profile_s2d_fp16"] = kernel_profile(functools.partial(encode_variant, codec, u, "s2d", True,
                                                                      torch.float16))
    for m in ALL_TRITON:
        if "error" not in res.get(f"fast_{m}_fp32", {}):
            res[f"kernel_profile_{m}_fp32"] = kernel_profile(functools.partial(encode_variant, codec, u, m, True))
    best_bf16 = min((k for k in timings if k.endswith("_bf16")), key=timings.get)
    res["best_bf16"] = best_bf16
    if compile_:
        m = best_bf16[len("fast_"):-len("_bf16")]
        try:
            t0 = time.perf_counter()
            # unrounded output so agreement sees the real error; rounding 1.5M latents is negligible
            cfn = torch.compile(functools.partial(encode_variant, codec, method=m, quantize=False, dtype=torch.bfloat16))
            with torch.no_grad():
                cfn(u)
            ct = time.perf_counter() - t0
            t = time_cuda(lambda: cfn(u), reps)
            with torch.no_grad():
                agr = agreement(cfn(u[:16]), z64)
            res[f"compiled_{m}_bf16"] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9, "compile_s": ct, **agr}
            timings[f"compiled_{m}_bf16"] = t
            log("compiled", res[f"compiled_{m}_bf16"])
        except Exception as e:  # report, do not fail the benchmark
            res[f"compiled_{m}_bf16"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    t = time_cuda(functools.partial(codec.encode, u), reps)
    res["codec.encode_default_fp32"] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9}
    t = time_cuda(functools.partial(reference_encode, codec, u), reps)
    res["walloc_cdl_reference_path_fp32"] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9}
    ref = walloc_twin(W, codec, "Codec2D", RGB16X)
    if ref is not None:
        t = time_cuda(functools.partial(walloc_encode, ref, u), reps)
        timings["walloc"] = t
        with torch.no_grad():
            agr = agreement(walloc_encode(ref, u[:16], False), z64)
        res["walloc_1.2.1_fp32"] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9, **agr}

        def walloc_bf16():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return walloc_encode(ref, u)
        t = time_cuda(walloc_bf16, reps)
        res["walloc_1.2.1_bf16_autocast"] = {"median_ms": t * 1e3, "GP_per_s": px / t / 1e9}
    step = resnet50_step_time(batch)
    res["resnet50_bf16_step_ms"] = step * 1e3
    res["encode_fraction_of_step"] = {k: v / step for k, v in timings.items()}
    res["stereo_J8"] = bench_audio_gpu(W, reps)
    return res


def kernel_profile(fn, n: int = 5) -> list:
    """[(kernel, microseconds per call)] of the busiest CUDA kernels, to see where the time goes."""
    try:
        return _kernel_profile(fn, n)
    except Exception as e:  # the profiler is optional; never lose the run to it
        return [f"profiler failed: {type(e).__name__}: {e}"]


def _kernel_profile(fn, n: int) -> list:
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if t:
            rows.append((e.key[:90], round(t / n, 1)))
    return sorted(rows, key=lambda r: -r[1])[:10]


class _matmul_tf32:
    """Context: cuBLAS TF32 on or off (the cuDNN flag covers convolutions)."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.on

    def __exit__(self, *a):
        torch.backends.cuda.matmul.allow_tf32 = self.prev


def bench_audio_gpu(W, reps: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(2)
    B, T = 32, 2 ** 18
    x = (torch.rand(B, 2, T, generator=g, device="cuda") - 0.5) * 0.5
    codec = make_codec(Codec1D, STEREO, x[:2]).cuda()
    with torch.no_grad():
        z64 = codec.double().encoder[0:2](codec.wavelet_analysis(x[:2].double(), J=codec.J))
        codec.float()
    res = {"input": f"{B}x2x{T} float32 on GPU", "Msamples_counts": "samples of all channels (B*C*T)"}
    for pname, dt, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                            ("bf16", torch.bfloat16, True), ("fp16", torch.float16, True)):
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
            t = time_cuda(functools.partial(fast_encode, codec, x, dtype=dt), reps)
            with torch.no_grad():
                agr = agreement(fast_encode(codec, x[:2], False, dtype=dt), z64)
        res[f"fast_{pname}"] = {"median_ms": t * 1e3, "Msamples_per_s": x.numel() / t / 1e6, **agr}
    # fast_encode runs float32 1D on CUDA per level; time the level-split convs it skips there too
    split = lambda: torch.round(codec.encoder[1](_encode_1d(codec, x, torch.float32)))
    t = time_cuda(split, reps)
    res["level_split_convs_fp32"] = {"median_ms": t * 1e3, "Msamples_per_s": x.numel() / t / 1e6}
    ref = walloc_twin(W, codec, "Codec1D", STEREO)
    if ref is not None:
        t = time_cuda(functools.partial(walloc_encode, ref, x), reps)
        res["walloc_1.2.1_fp32"] = {"median_ms": t * 1e3, "Msamples_per_s": x.numel() / t / 1e6}
        for k in list(res):
            if k.startswith(("fast_", "level_split")):
                res[k]["speedup_vs_walloc"] = t * 1e3 / res[k]["median_ms"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--cpu-reps", type=int, default=9, help="round-robin repetitions on the CPU")
    p.add_argument("--gpu-reps", type=int, default=20)
    p.add_argument("--gpu-batch", type=int, default=128)
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidate")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    W = import_walloc()
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "threads": a.threads, "walloc_imported": W is not None}
    if not a.skip_cpu:
        out["cpu_results"] = bench_cpu(W, a.cpu_reps)
    if not a.skip_gpu and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["gpu_results"] = bench_gpu(W, a.gpu_batch, a.gpu_reps, not a.no_compile)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
