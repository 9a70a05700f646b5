"""transformers' generate against our decode loop (studio/decode.py), through studio/generate.py: same model,
prompt, seed and settings, in one run.

For each shape: unsteered, and steered (two controls on every decoder layer, gate p = 1, the live readout on with
a random bank's RFM probe). Each configuration is run once to warm up, then `--repeats` times in alternation; the
medians are compared (the minimum is printed too: on a shared machine it is the steadier figure). `--check` adds
greedy runs of both engines and reports how many tokens agree.

    python bench/generate.py                                   # tiny model on the CPU, 10 s of audio
    python bench/generate.py --shape small --seconds 2         # musicgen-small's shape on the CPU (random weights)
    python bench/generate.py --shape small,large --check       # on a GPU: fp16, 10 s, CFG 3 (the issue's figures)
    python bench/generate.py --stream                          # first sound when streaming vs the whole render
    python bench/generate.py --shape small --positions 10 30 120   # step time by position: whole cache vs window
    python bench/generate.py --shape small --precision int8 --no-steer # the CPU's int8 path: speed and fidelity

`--stream` times, for our engine and the steered recipe, how long after the call the first streamed audio arrives
(studio/streaming.py, as the page plays it) against the whole render without streaming (what a listener waited for
before), and what streaming adds to the whole render.

`--precision int8` adds our loop on an int8 copy of the model (studio/model.py quantize_decoder) to the fp32 runs and
then measures its fidelity to fp32 (studio/precision.py): teacher-forced top-1 agreement and KL of the guided scores
(int8's a position per forward, as it decodes) on the tokens the fp32 loop sampled, and on the arpeggio of the
studio's load-time check.

`--positions` times every step of unsteered renders of the given lengths (past the model's 30 s, window by window, as
the studio makes them) with self-attention reading the KV cache up to the current window of positions (the product)
and, in the same run, reading the whole preallocated cache at every step (how the loop ran before); it prints the mean
time per step by position in the model's context and over the whole clip.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe, machine  # noqa: E402
from bench.steer import timed  # noqa: E402
from bench.workloads import SHAPES, random_bank, shaped_model, steered_recipe  # noqa: E402
from studio.decode import ATTENTION_BUCKET, decode, teacher_forced_scores  # noqa: E402
from studio.generate import generate, run_decode  # noqa: E402
from studio.model import LoadedModel, resolve_device  # noqa: E402
from studio.precision import CHECK_PROMPT, check_tokens, compare, int8_scores, predicted_slots  # noqa: E402
from studio.recipe import Recipe  # noqa: E402
from studio.reference import run_reference, sampling_kwargs  # noqa: E402
from studio.sampling import Sampling  # noqa: E402

PROMPT, SEED = "warm lofi piano with a walking bass line", 1234
ENGINES = {"hf": run_reference, "fast": run_decode}


def hf_generate(loaded: LoadedModel, frames: int, sampling: Sampling) -> torch.Tensor:
    """transformers' generate with our sampling settings, seeded as the reference engine seeds it; returns the audio."""
    inputs = loaded.tokenizer([PROMPT], return_tensors="pt", padding=True).to(loaded.device)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        return loaded.model.generate(**inputs, max_new_tokens=loaded.steps_for(frames), **sampling_kwargs(sampling))


def greedy_agreement(loaded: LoadedModel, frames: int, guidance: float) -> dict:
    """Greedy tokens of both engines: the share that are equal, and the first step where they differ (None)."""
    from unittest import mock

    greedy = Sampling(guidance_scale=guidance, greedy=True)
    codec = loaded.model.audio_encoder
    with mock.patch.object(codec, "decode", wraps=codec.decode) as spy:
        hf_generate(loaded, frames, greedy)
    theirs = spy.call_args.args[0][0].cpu()
    ours = decode(loaded, [PROMPT], frames, sampling=greedy, with_audio=False).codes
    differ = (ours != theirs)[0].nonzero()
    first = None if not len(differ) else int((differ[:, 0] + differ[:, 1]).min())
    return {"equal": (ours == theirs).float().mean().item(), "first_differing_step": first}


def streamed(loaded: LoadedModel, recipe: Recipe, banks: dict) -> tuple[float, float]:
    """(seconds to the first streamed audio, seconds to the whole render) of one streamed generation."""
    first = []

    def listen(event):
        if event.audio is not None and not first:
            first.append(time.perf_counter() - began)

    began = time.perf_counter()
    generate(loaded, recipe, listen, banks=banks, stream_audio=True)
    return first[0], time.perf_counter() - began


def bench_stream(loaded: LoadedModel, recipe: Recipe, banks: dict, repeats: int) -> dict:
    plain = lambda: timed(loaded, recipe, banks)[0]  # noqa: E731
    plain(), streamed(loaded, recipe, banks)  # warm-up
    whole, firsts, totals = [], [], []
    for _ in range(repeats):
        whole.append(plain())
        first, total = streamed(loaded, recipe, banks)
        firsts.append(first)
        totals.append(total)
    w, f, t = (statistics.median(v) for v in (whole, firsts, totals))
    print(f"first sound, streamed: median {f:.3f} s (runs {', '.join(f'{x:.3f}' for x in firsts)})")
    print(f"whole render, not streamed: median {w:.3f} s; streamed: {t:.3f} s")
    print(f"first sound / whole render: {f / w:.3f} ({w / f:.1f}x sooner); streaming adds {100 * (t / w - 1):+.1f}%")
    return {"first_sound_s": f, "whole_render_s": w, "whole_render_streamed_s": t}


def step_times(loaded: LoadedModel, recipe: Recipe, bucket: int | None) -> list[tuple[int, float]]:
    """(position in the model's context, seconds) of every decoder step of one render, a window's first step left out
    (it also holds the window's prefill)."""
    times: list[tuple[int, float]] = []

    def engine(loaded, recipe, on_step, given=None):
        last = [None]

        def timed_step(done, total, sequence):
            now = time.perf_counter()
            if last[0] is not None:
                times.append((done - 1, now - last[0]))
            last[0] = now
            on_step(done, total, sequence)

        return run_decode(loaded, recipe, timed_step, given, attention_bucket=bucket)

    generate(loaded, recipe, engine=engine)
    return times


def bench_positions(loaded: LoadedModel, base: Recipe, lengths: list[float], repeats: int) -> dict:
    span = 250  # positions per printed column
    modes = {"whole cache": None, f"window ({ATTENTION_BUCKET})": ATTENTION_BUCKET}
    step_times(loaded, replace(base, seconds=1.0), ATTENTION_BUCKET)  # warm-up
    figures = {}
    for seconds in lengths:
        recipe = replace(base, seconds=seconds)
        runs = {mode: [] for mode in modes}
        for _ in range(repeats):  # alternating, so that machine load falls on both alike
            for mode, bucket in modes.items():
                runs[mode].append(step_times(loaded, recipe, bucket))
        top = max(position for position, _ in runs["whole cache"][0])
        columns = range(0, top + 1, span)
        print(f"\n{seconds:g} s: mean ms per step by position in the context (the fastest of {repeats} runs per step)")
        print(f"{'':>18}" + "".join(f"{f'{c}-{min(c + span, top + 1) - 1}':>11}" for c in columns) + "   whole clip")
        means = {}
        for mode in modes:
            steps = [min(values) for values in zip(*[[t for _, t in run] for run in runs[mode]])]
            positions = [position for position, _ in runs[mode][0]]
            cells = [1000 * statistics.mean(t for p, t in zip(positions, steps) if c <= p < c + span) for c in columns]
            means[mode] = 1000 * statistics.mean(steps)
            print(f"{mode:>18}" + "".join(f"{cell:11.2f}" for cell in cells) + f"{means[mode]:13.2f}")
        whole, windowed = means.values()
        print(f"{seconds:g} s: whole cache / window, per step over the clip: {whole / windowed:.3f}x")
        figures[f"{seconds:g} s"] = {"whole cache ms/step": whole, "window ms/step": windowed}
    return figures


def fidelity_report(reference: LoadedModel, other: LoadedModel, recipe: Recipe) -> dict:
    """`other`'s fidelity to `reference` (fp32) on the tokens fp32 sampled for `recipe`, and on the check's tokens."""
    frames = reference.frames_for(recipe.seconds)
    sampled = decode(reference, [recipe.prompt], frames, seed=recipe.seed, sampling=recipe.sampling, with_audio=False)
    grids = {
        "tokens fp32 sampled": (sampled.sequence[0], predicted_slots(reference, frames), recipe.prompt),
        "the load-time check's arpeggio": (*check_tokens(reference), CHECK_PROMPT),
    }
    guidance = recipe.sampling.guidance_scale
    report = {}
    for name, (tokens, free, prompt) in grids.items():
        ref = teacher_forced_scores(reference, prompt, tokens, guidance)
        got = int8_scores(other, prompt, tokens, guidance)
        fidelity = compare(ref, got, free)
        top = ref[free].softmax(-1).amax(-1).mean().item()
        print(f"{other.precision} on {name}: {fidelity.describe()} (fp32's mean top probability {top:.4f})")
        report[name] = {**asdict(fidelity), "fp32_mean_top_probability": top}
    return report


def bench_shape(shape: str, args) -> dict:
    """Time and print one shape's configurations; returns their figures (for --json)."""
    loaded = shaped_model(shape, args.device, None if args.precision == "int8" else args.precision)
    cheaper = {"int8": shaped_model(shape, args.device, "int8")} if args.precision == "int8" else {}
    bank = random_bank(loaded.signature, probe_points=1000 if shape == "tiny" else 8000)
    banks = {bank.concept: bank}
    base = Recipe(
        seconds=args.seconds,
        model=loaded.model_id,
        prompt=PROMPT,
        seed=SEED,
        sampling=Sampling(guidance_scale=args.guidance, top_k=250),
    )
    recipes = {False: base, True: steered_recipe(loaded, base, bank)}
    steps = loaded.steps_for(loaded.frames_for(args.seconds))
    # (engine, steered): transformers' generate and our loop at the model's precision; "int8" our loop at int8
    configs = [("hf", False), ("fast", False)] + ([] if args.no_steer else [("hf", True), ("fast", True)])
    configs += [(name, steered) for name in cheaper for steered in sorted({s for _, s in configs})]

    def run(engine: str, steered: bool) -> float:
        if engine in cheaper:
            return timed(cheaper[engine], recipes[steered], banks, engine=run_decode)[0]
        return timed(loaded, recipes[steered], banks, engine=ENGINES[engine])[0]

    graph = loaded.device.type == "cuda"
    print(
        f"\n== {loaded.model_id} on {loaded.device} ({loaded.precision}): {loaded.num_layers} layers x "
        f"{loaded.hidden_size}, {args.seconds:g} s = {steps} steps, CFG {args.guidance:g}, top-k 250, "
        f"{torch.get_num_threads()} threads; fast engine {'with' if graph else 'without'} CUDA graphs; steered: "
        f"2 controls on every layer, readout on ({len(bank.readout.centers)} probe centers)"
    )
    if args.stream:
        return bench_stream(loaded, recipes[not args.no_steer], banks, args.repeats)
    if args.positions:
        return bench_positions(loaded, base, args.positions, args.repeats)
    for config in configs:
        run(*config)  # warm-up
    times = {config: [] for config in configs}
    for _ in range(args.repeats):  # interleaved, so that machine load hits every configuration alike
        for config in configs:
            times[config].append(run(*config))
    median = {config: statistics.median(values) for config, values in times.items()}
    label = {(engine, steered): f"{engine} {'steered' if steered else 'unsteered'}" for engine, steered in configs}
    figures = {
        "model": loaded.model_id,
        "device": str(loaded.device),
        "precision": loaded.precision,
        "seconds": args.seconds,
        "steps": steps,
        "median_s": {label[config]: value for config, value in median.items()},
        "min_s": {label[config]: min(values) for config, values in times.items()},
        "speedup_vs_hf": {},
        "steering_overhead": {},
    }
    for (engine, steered), value in median.items():
        runs = times[(engine, steered)]
        print(
            f"{engine:>4} {'steered  ' if steered else 'unsteered'}: median {value:7.3f} s, min {min(runs):7.3f} s "
            f"({1000 * value / steps:6.2f} ms/step; runs {', '.join(f'{t:.3f}' for t in runs)})"
        )
    for steered in sorted({s for _, s in configs}):
        name = "steered" if steered else "unsteered"
        for engine in ("fast", *cheaper):
            ratio = median[("hf", steered)] / median[(engine, steered)]
            figures["speedup_vs_hf"][label[(engine, steered)]] = ratio
            print(f"speed-up {engine} vs transformers ({loaded.precision}), {name}: {ratio:.2f}x")
    if not args.no_steer:
        for engine in ("hf", "fast", *cheaper):
            ratio = median[(engine, True)] / median[(engine, False)]
            figures["steering_overhead"][engine] = ratio - 1
            print(f"steering + readout overhead, {engine}: {ratio:.4f} ({100 * (ratio - 1):+.2f}%)")
    if args.check:
        greedy = figures["greedy_agreement"] = greedy_agreement(loaded, loaded.frames_for(args.seconds), args.guidance)
        first = greedy["first_differing_step"]
        print(f"greedy tokens equal to transformers': {greedy['equal']:.4f} (first differing step: {first})")
    for name, other in cheaper.items():
        figures[f"{name}_fidelity"] = fidelity_report(loaded, other, base)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shape", default=None, help="comma list of tiny, small, large (default: small,large on CUDA, tiny on the CPU)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    parser.add_argument(
        "--precision",
        default=None,
        help="fp32 | fp16 | bf16 (default: fp16 on CUDA, fp32 on the CPU); int8: fp32 runs, and our loop at int8 too",
    )
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-steer", action="store_true", help="skip the steered runs")
    parser.add_argument("--check", action="store_true", help="also compare greedy tokens with transformers'")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--stream", action="store_true", help="time the first streamed audio instead of the engines")
    parser.add_argument(
        "--positions",
        nargs="+",
        type=float,
        metavar="SECONDS",
        help="time each step of renders this long, attention over the window against the whole cache",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "small,large" if resolve_device(args.device).type == "cuda" else "tiny"
    shapes = (args.shape or default).split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown --shape {unknown[0]}: use tiny, small or large")
    figures = {"machine": machine()}
    print(describe(figures["machine"]))
    for shape in shapes:
        figures[shape] = bench_shape(shape, args)
        if torch.cuda.is_available():  # the last shape's model is gone with bench_shape's frame
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
