"""transformers' generate against our decode loop (studio/decode.py): same model, prompt, seed and settings, one run.

For each shape: unsteered, and steered (studio/hooks.py: two controls on every decoder layer, the readout layer's
states captured) when the hooks module is present. Each configuration is run once to warm up, then `--repeats` times
in alternation; the medians are compared (the minimum is printed too: on a shared machine it is the steadier figure).
`--check` adds greedy runs of both engines and reports how many tokens agree.

    python bench/generate.py                                   # tiny model on the CPU, 10 s of audio
    python bench/generate.py --shape small --seconds 2         # musicgen-small's shape on the CPU (random weights)
    python bench/generate.py --shape small,large --check       # on a GPU: fp16, 10 s, CFG 3 (the issue's figures)

Random weights of the published shapes have the real compute profile: decoder small d=1024 x 24 layers x 16 heads
(ffn 4096), large d=2048 x 48 x 32 (ffn 8192); t5-base text encoder; EnCodec 32 kHz with 4 codebooks of 2048.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio.decode import decode  # noqa: E402
from studio.model import (LoadedModel, ModelSignature, config_hash, load_model, resolve_device,  # noqa: E402
                          resolve_dtype, tiny_tokenizer)
from studio.recipe import Sampling  # noqa: E402

DECODER_SHAPES = {"small": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
                  "large": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, ffn_dim=8192)}
PROMPT, SEED = "warm lofi piano with a walking bass line", 1234


def shaped_model(shape: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Random weights of musicgen-`shape`'s architecture, built directly on `device`."""
    from transformers import (EncodecConfig, GenerationConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)

    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, hidden_size=128,
                          upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, codebook_dim=128, target_bandwidths=[2.2],
                          num_lstm_layers=2, norm_type="weight_norm", use_causal_conv=False, normalize=False)
    decoder = MusicgenDecoderConfig(vocab_size=2048, num_codebooks=4, max_position_embeddings=2048, pad_token_id=2048,
                                    bos_token_id=2048, **DECODER_SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio,
                                                                decoder=decoder))
    model = model.to(dtype=dtype).eval().requires_grad_(False)
    model.generation_config = GenerationConfig(do_sample=True, guidance_scale=3.0, top_k=250, max_length=1500,
                                               decoder_start_token_id=2048, pad_token_id=2048, bos_token_id=2048)
    dec = model.config.decoder
    return LoadedModel(model=model, tokenizer=tiny_tokenizer(), model_id=f"musicgen-{shape}-shape", device=device,
                       dtype=dtype, sample_rate=32000, frame_rate=50, num_codebooks=4,
                       num_layers=dec.num_hidden_layers, hidden_size=dec.hidden_size, max_seconds=30.0, is_tiny=False,
                       signature=ModelSignature(f"musicgen-{shape}-shape", config_hash(model), dec.hidden_size,
                                                dec.num_hidden_layers))


def hf_generate(loaded: LoadedModel, frames: int, sampling: Sampling) -> torch.Tensor:
    """transformers' generate, seeded the way studio/generate.py seeds it; returns the audio."""
    inputs = loaded.tokenizer([PROMPT], return_tensors="pt", padding=True).to(loaded.device)
    kwargs = dict(do_sample=False) if sampling.greedy else dict(do_sample=True, top_k=sampling.top_k)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        return loaded.model.generate(**inputs, max_new_tokens=frames + loaded.num_codebooks - 1,
                                     guidance_scale=sampling.guidance_scale, **kwargs)


def steering(loaded: LoadedModel, steps: int):
    """A context-manager factory that hooks every decoder layer (two controls) and captures the middle layer's
    states, or None when studio/hooks.py is not there."""
    try:
        from studio.hooks import HookManager
        from studio.plan import SteeringPlan
    except ImportError:
        return None
    gen = torch.Generator().manual_seed(0)
    L, d, K = loaded.num_layers, loaded.hidden_size, 2
    directions = torch.randn(L, K, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    plan = SteeringPlan(coefficients=(0.3 * torch.rand(steps, L, K, generator=gen)).to(loaded.device),
                        directions=directions.to(loaded.device), cfg_mode="both", labels=("a", "b"),
                        layer_weights=torch.ones(L, K), schedules=torch.ones(steps, K),
                        gates=torch.ones(steps, L, K, dtype=torch.bool))
    return lambda: HookManager(loaded, plan, capture_layer=L // 2, steps=steps, cfg=True)


def timed(loaded: LoadedModel, run: Callable[[], object]) -> float:
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    start = time.perf_counter()
    run()
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    return time.perf_counter() - start


def greedy_agreement(loaded: LoadedModel, frames: int, guidance: float) -> str:
    from unittest import mock

    greedy = Sampling(guidance_scale=guidance, greedy=True)
    codec = loaded.model.audio_encoder
    with mock.patch.object(codec, "decode", wraps=codec.decode) as spy:
        hf_generate(loaded, frames, greedy)
    theirs = spy.call_args.args[0][0].cpu()
    ours = decode(loaded, [PROMPT], frames, sampling=greedy, with_audio=False).codes
    differ = (ours != theirs)[0].nonzero()
    first = "none" if not len(differ) else str(int((differ[:, 0] + differ[:, 1]).min()))
    return f"greedy tokens equal to transformers': {(ours == theirs).float().mean().item():.4f} (first differing step: {first})"


def bench_shape(shape: str, args) -> None:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    loaded = (load_model("tiny", device=str(device), dtype=args.dtype, warmup=False) if shape == "tiny"
              else shaped_model(shape, device, dtype))
    frames = loaded.frames_for(args.seconds)
    steps = frames + loaded.num_codebooks - 1
    sampling = Sampling(guidance_scale=args.guidance, top_k=250)
    hooked = None if args.no_steer else steering(loaded, steps)
    used_graph: dict[bool, bool] = {}
    configs = [("hf", False), ("ours", False)] + ([("hf", True), ("ours", True)] if hooked else [])

    def run(engine: str, steered: bool) -> float:
        def body() -> None:
            if engine == "hf":
                hf_generate(loaded, frames, sampling)
            else:
                used_graph[steered] = decode(loaded, [PROMPT], frames, seed=SEED, sampling=sampling).used_cuda_graph

        if not steered:
            return timed(loaded, body)
        with hooked():
            return timed(loaded, body)

    print(f"\n== {loaded.model_id} on {device} ({dtype}): {loaded.num_layers} layers x {loaded.hidden_size}, "
          f"{args.seconds:g} s = {steps} steps, CFG {args.guidance:g}, top-k 250, {torch.get_num_threads()} threads")
    for config in configs:
        run(*config)  # warm-up
    times = {config: [] for config in configs}
    for _ in range(args.repeats):
        for config in configs:
            times[config].append(run(*config))
    median = {config: statistics.median(values) for config, values in times.items()}
    for (engine, steered), value in median.items():
        graph = f", CUDA graph {'on' if used_graph.get(steered) else 'off'}" if engine == "ours" else ""
        runs = times[(engine, steered)]
        print(f"{engine:>4} {'steered  ' if steered else 'unsteered'}: median {value:7.3f} s, min {min(runs):7.3f} s "
              f"({1000 * value / steps:6.2f} ms/step{graph}; runs {', '.join(f'{t:.3f}' for t in runs)})")
    for steered in sorted({s for _, s in configs}):
        name = "steered" if steered else "unsteered"
        print(f"speed-up ours vs transformers, {name}: {median[('hf', steered)] / median[('ours', steered)]:.2f}x")
    if hooked:
        for engine in ("hf", "ours"):
            ratio = median[(engine, True)] / median[(engine, False)]
            print(f"steering overhead, {engine}: {ratio:.4f} ({100 * (ratio - 1):+.2f}%)")
    if args.check:
        print(greedy_agreement(loaded, frames, args.guidance))
    del loaded
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default=None, help="comma list of tiny, small, large (default: small,large on "
                        "CUDA, tiny on the CPU)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    parser.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16 (default: fp16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-steer", action="store_true", help="skip the steered runs")
    parser.add_argument("--check", action="store_true", help="also compare greedy tokens with transformers'")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "small,large" if resolve_device(args.device).type == "cuda" else "tiny"
    shapes = (args.shape or default).split(",")
    unknown = [s for s in shapes if s not in ("tiny", *DECODER_SHAPES)]
    if unknown:
        parser.error(f"unknown --shape {unknown[0]}: use tiny, small or large")
    for shape in shapes:
        bench_shape(shape, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
