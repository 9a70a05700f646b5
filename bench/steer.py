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
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe, machine  # noqa: E402
from bench.workloads import random_bank, shaped_model, steered_recipe  # noqa: E402
from probes.bank import ConceptBank  # noqa: E402
from studio.banks import check_model  # noqa: E402
from studio.generate import Engine, generate  # noqa: E402
from studio.model import LoadedModel  # noqa: E402
from studio.recipe import Recipe  # noqa: E402
from studio.sampling import Sampling  # noqa: E402

COMMITTED_TINY_BANK = ROOT / "assets" / "banks" / "tiny" / "notes"


def timed(
    loaded: LoadedModel, recipe: Recipe, banks: dict, readout_every: int | None = None, engine: Engine | None = None
) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one generation, with a step listener as the studio has."""
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    generate(loaded, recipe, on_step=lambda event: None, banks=banks, readout_every=readout_every, engine=engine)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def summary(name: str, runs: list[tuple[float, float]]) -> tuple[float, float, float]:
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    print(
        f"{name:10s} wall: min {min(walls):.3f} s, median {statistics.median(walls):.3f} s; "
        f"CPU: min {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s"
    )
    return min(walls), statistics.median(walls), min(cpus)


def instructions(args, variant: str) -> int:
    """Instructions executed by one generation of `variant`, counted by valgrind's callgrind in a child process
    (instrumentation switched on only around that generation, after a warm-up one)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        child = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--seconds",
            str(args.seconds or 10.0),
            "--guidance",
            str(args.guidance),
            "--threads",
            "1",
            "--shape",
            args.shape,
        ]
        child += ["--probe-points", str(args.probe_points)] if args.probe_points else []
        child += ["--readout-every", str(args.readout_every)] if args.readout_every else []
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *child],
            check=True,
            capture_output=True,
        )
        totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
        return int(totals.split()[1])


def setup(args) -> tuple[LoadedModel, dict, Recipe, Recipe, str]:
    """The model, its bank, the unsteered and steered recipes, and a description of the bank."""
    loaded = shaped_model(args.shape, args.device, args.precision)
    if args.shape == "tiny" and args.probe_points is None and COMMITTED_TINY_BANK.is_dir():
        bank = ConceptBank.load(COMMITTED_TINY_BANK)
        check_model(bank, loaded.signature)
        about = f"the committed bank {COMMITTED_TINY_BANK.relative_to(ROOT)}"
    else:
        points = args.probe_points or (1000 if args.shape == "tiny" else 8000)
        bank = random_bank(loaded.signature, probe_points=points)
        about = "a random bank"
    about += f", readout at layer {bank.readout_layer} ({len(bank.readout.centers)} probe centers)"
    base = Recipe(
        seconds=args.seconds or 10.0,
        model=loaded.model_id,
        prompt="warm lofi piano",
        seed=1234,
        sampling=Sampling(guidance_scale=args.guidance),
    )
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
    parser.add_argument("--shape", choices=("tiny", "small", "large"), default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default=None, help="fp32 | fp16 | bf16 | int8")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 10)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--readout-every", type=int, default=None, help="live readout period in steps")
    parser.add_argument("--probe-points", type=int, default=None, help="readout probe centers (default by shape)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions of one generation of each under valgrind (CPU, slow)",
    )
    parser.add_argument("--child", choices=("unsteered", "steered"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return run_child(args)

    loaded, banks, base, steered, about = setup(args)
    print(describe(machine()))
    print(
        f"model {loaded.model_id} on {loaded.device} ({loaded.precision}), {loaded.num_layers} layers x "
        f"{loaded.hidden_size}, {base.seconds:g} s, CFG {args.guidance:g}, {torch.get_num_threads()} CPU threads; "
        f"steered: {len(steered.controls)} controls on all {loaded.num_layers} layers; {about}"
    )
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
        print(
            f"instructions (callgrind, one generation): unsteered {counts['unsteered']:,}, steered "
            f"{counts['steered']:,}; ratio {ratio:.4f} ({100 * (ratio - 1):+.2f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
