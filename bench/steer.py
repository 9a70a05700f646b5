"""Steering overhead: steered against unsteered generation, same model and seed, in one run.

Steered means every decoder layer hooked (a control on every layer, gate p = 1) and the live readout on (captured
states, the readout probe every `--readout-every` steps and over every step at the end). Both runs have a step listener,
as the studio has. Runs alternate unsteered and steered after a warm-up run of each; the ratio is printed for the
minimum and median wall time and for the minimum process CPU time. On a shared, busy CPU those swing by several
percent from run to run; ``--instructions`` adds an exact figure: the instructions one generation of each executes,
counted by valgrind's callgrind (deterministic, slow: minutes per 10 s clip).

    python bench/steer.py                        # the built-in tiny model on the CPU
    python bench/steer.py --shape small          # random weights of musicgen-small's shape (for a GPU)
    python bench/steer.py --seconds 4 --instructions   # plus callgrind instruction counts (CPU)

The tiny model uses its committed notes bank when it exists. Otherwise, or with `--probe-points N`, the bank is random:
random unit directions and an RFM readout probe with N random centers (default 1,000 for tiny, 8,000 for small, about
what a musicgen-small bank trained on the full SynTheory notes set holds), so the readout costs what a real one does.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes.bank import ConceptBank  # noqa: E402
from probes.rfm import RFMProbe  # noqa: E402
from studio.generate import generate  # noqa: E402
from studio.model import LoadedModel, ModelSignature, load_model  # noqa: E402
from studio.recipe import Control, LayerSpec, ReadoutSpec, Recipe, Sampling  # noqa: E402

NOTE_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
COMMITTED_TINY_BANK = ROOT / "assets" / "banks" / "tiny" / "notes"


def random_bank(signature: ModelSignature, concept: str = "notes", classes: list[str] | None = None,
                components: int = 4, probe_points: int = 256, readout_layer: int | None = None,
                seed: int = 0) -> ConceptBank:
    """A ConceptBank of the right shapes for `signature` with random unit directions, random validation AUCs and a
    multiclass RFM readout probe with random centers (identity metric): real code paths, meaningless concepts."""
    classes = list(classes or NOTE_CLASSES)
    gen = torch.Generator().manual_seed(seed)
    L, C, d = signature.num_layers, len(classes), signature.hidden_size
    directions = torch.randn(L, C, components, d, generator=gen)
    directions /= directions.norm(dim=-1, keepdim=True)
    readout = RFMProbe(centers=torch.randn(probe_points, d, generator=gen),
                       alphas=torch.rand(probe_points, C, generator=gen) / probe_points, M=torch.eye(d),
                       agop=torch.eye(d), bandwidth=10.0, exponent=1.0, reg=1e-3, center_grads=False,
                       task="multiclass", val_auc=0.5, best_iter=0)
    return ConceptBank(concept=concept, classes=classes, directions=directions,
                       val_auc=0.5 + 0.5 * torch.rand(L, C, generator=gen), readout_layer=readout_layer
                       if readout_layer is not None else L // 2, readout=readout, signature=signature,
                       pooling="mean", hparams={}, dataset={"synthetic": True, "seed": seed})


def small_shaped_model(device: str | None, dtype: str | None) -> LoadedModel:
    """Random weights of facebook/musicgen-small's shape (t5-base text encoder, EnCodec 32 kHz, 24 x 1024 decoder),
    written with save_pretrained and loaded through the studio's own folder path."""
    from transformers import (EncodecConfig, GenerationConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)

    from studio.model import MODEL_ID_KEY, tiny_tokenizer

    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=64, hidden_size=128,
                          upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, codebook_dim=128,
                          target_bandwidths=[2.2], num_lstm_layers=2, norm_type="weight_norm", use_causal_conv=False,
                          normalize=False)
    decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, max_position_embeddings=2048, pad_token_id=2048,
                                    bos_token_id=2048)
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder))
    model.generation_config = GenerationConfig(do_sample=True, guidance_scale=3.0, top_k=250, max_length=1500,
                                               decoder_start_token_id=2048, pad_token_id=2048, bos_token_id=2048)
    setattr(model.config, MODEL_ID_KEY, "musicgen-small-shape")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        del model
        return load_model(folder, device=device, dtype=dtype)


def steered_recipe(loaded: LoadedModel, base: Recipe, bank: ConceptBank) -> Recipe:
    """Every layer carries a control (manual weight 1 everywhere, gate p = 1) and the readout is on."""
    every_layer = LayerSpec(mode="manual", weights=tuple([1.0] * loaded.num_layers))
    controls = (Control(concept=bank.concept, class_name=bank.classes[0], strength=0.3, layers=every_layer,
                        gate_p=1.0),
                Control(concept=bank.concept, class_name=bank.classes[1], strength=-0.2, component=1,
                        layers=every_layer, gate_p=1.0))
    return replace(base, controls=controls, readout=ReadoutSpec(concept=bank.concept))


def timed(loaded: LoadedModel, recipe: Recipe, banks: dict, readout_every: int | None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one generation, with a step listener as the studio has."""
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    generate(loaded, recipe, on_step=lambda event: None, banks=banks, readout_every=readout_every)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def summary(name: str, runs: list[tuple[float, float]]) -> tuple[float, float, float]:
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    print(f"{name:10s} wall: min {min(walls):.3f} s, median {statistics.median(walls):.3f} s; "
          f"CPU: min {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s")
    return min(walls), statistics.median(walls), min(cpus)


def instructions(args, variant: str) -> int:
    """Instructions executed by one generation of `variant`, counted by valgrind's callgrind in a child process
    (instrumentation switched on only around that generation, after a warm-up one)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        child = [sys.executable, __file__, "--child", variant, "--seconds", str(args.seconds or 10.0),
                 "--guidance", str(args.guidance), "--threads", "1", "--shape", args.shape]
        child += ["--probe-points", str(args.probe_points)] if args.probe_points else []
        child += ["--readout-every", str(args.readout_every)] if args.readout_every else []
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *child],
                       check=True, capture_output=True)
        totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
        return int(totals.split()[1])


def setup(args) -> tuple[LoadedModel, dict, Recipe, Recipe, str]:
    """The model, its bank, the unsteered and steered recipes, and a description of the bank."""
    loaded = load_model("tiny", device=args.device, dtype=args.dtype) if args.shape == "tiny" else \
        small_shaped_model(args.device, args.dtype)
    if args.shape == "tiny" and args.probe_points is None and COMMITTED_TINY_BANK.is_dir():
        bank = ConceptBank.load(COMMITTED_TINY_BANK, expect=loaded.signature)
        about = f"the committed bank {COMMITTED_TINY_BANK.relative_to(ROOT)}"
    else:
        points = args.probe_points or (1000 if args.shape == "tiny" else 8000)
        bank = random_bank(loaded.signature, probe_points=points)
        about = "a random bank"
    about += f", readout at layer {bank.readout_layer} ({len(bank.readout.centers)} probe centers)"
    base = Recipe(seconds=args.seconds or 10.0, model=loaded.model_id, prompt="warm lofi piano", seed=1234,
                  sampling=Sampling(guidance_scale=args.guidance))
    return loaded, {bank.concept: bank}, base, steered_recipe(loaded, base, bank), about


def run_child(args) -> int:
    """Under callgrind: warm up, then count one generation of the chosen variant."""
    loaded, banks, base, steered, _ = setup(args)
    recipe = steered if args.child == "steered" else base
    timed(loaded, recipe, banks, args.readout_every)
    subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, capture_output=True)
    timed(loaded, recipe, banks, args.readout_every)
    subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True, capture_output=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 10)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--readout-every", type=int, default=None, help="live readout period in steps")
    parser.add_argument("--probe-points", type=int, default=None, help="readout probe centers (default by shape)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions of one generation of each under valgrind (CPU, slow)")
    parser.add_argument("--child", choices=("unsteered", "steered"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return run_child(args)

    loaded, banks, base, steered, about = setup(args)
    print(f"model {loaded.model_id} on {loaded.device} ({loaded.dtype}), {loaded.num_layers} layers x "
          f"{loaded.hidden_size}, {base.seconds:g} s, CFG {args.guidance:g}, {torch.get_num_threads()} CPU threads; "
          f"steered: {len(steered.controls)} controls on all {loaded.num_layers} layers; {about}")
    timed(loaded, base, banks, args.readout_every)  # warm-up
    timed(loaded, steered, banks, args.readout_every)
    plain, steer = [], []
    for _ in range(args.repeats):  # interleaved, so that machine load hits both alike
        plain.append(timed(loaded, base, banks, args.readout_every))
        steer.append(timed(loaded, steered, banks, args.readout_every))
    p_min, p_med, p_cpu = summary("unsteered", plain)
    s_min, s_med, s_cpu = summary("steered", steer)
    for label, s, p in (("wall min", s_min, p_min), ("wall median", s_med, p_med), ("CPU min", s_cpu, p_cpu)):
        print(f"overhead steered/unsteered ({label}): {s / p:.4f} ({100 * (s / p - 1):+.2f}%; target <= +5%)")
    if args.instructions:
        counts = {variant: instructions(args, variant) for variant in ("unsteered", "steered")}
        ratio = counts["steered"] / counts["unsteered"]
        print(f"instructions (callgrind, one generation): unsteered {counts['unsteered']:,}, steered "
              f"{counts['steered']:,}; ratio {ratio:.4f} ({100 * (ratio - 1):+.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
