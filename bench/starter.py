"""Benchmark: the starter banks' stages (probes/starter.py) on the tiny model and on random weights of musicgen-small's
and -large's shapes, the projected wall time of a starter build on each, and, on the tiny model, a real build from a
cold cache against its projection and the starter subsets' validation scores against the full recipe's.

Per shape it prints clips rendered per second (fluidsynth, parallel processes), activation clips per second (4 s clips
through the codec and the decoder, batched on the device), probe fits per second, then the subset the 3-minute budget
picks and the projected seconds of each stage, and the projection of the largest subset (the one measured against the
full recipe below).

    python bench/starter.py                          # tiny, small and large shapes: rates and projections
    python bench/starter.py --shapes tiny --build    # plus a real starter build of the tiny model from a cold cache
    python bench/starter.py --compare-full           # every rung of the tiny model's starter subsets against the full
                                                     # recipe (minutes on a GPU, about an hour on a 2-core CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe, machine  # noqa: E402
from bench.workloads import shaped_model  # noqa: E402
from probes.starter import (  # noqa: E402
    DEFAULT_MINUTES,
    STARTER,
    StageRates,
    build_starter,
    measure_rates,
    plan_concept,
    plan_starter,
)
from probes.syntheory import TEN_FAMILIES  # noqa: E402
from probes.train import TrainOptions, train_concept_bank  # noqa: E402

# The full recipe on the tiny model: every clip of the ten instruments it learned from (notes: its four octaves).
FULL = {
    "notes": dict(instruments=list(TEN_FAMILIES), octaves=[2, 3, 4, 5]),
    "chords": dict(instruments=list(TEN_FAMILIES)),
    "tempos": dict(),
}


def projection(shape: str, minutes: float, device: str | None) -> dict:
    loaded = shaped_model(shape, device=device)
    rates = measure_rates(loaded, device)
    chosen = plan_starter(rates, loaded.num_layers, minutes)
    largest = plan_starter(rates, loaded.num_layers, float("inf"))
    del loaded
    return {
        "rates": {
            "render_clips_per_s": rates.render_clips_per_s,
            "activation_clips_per_s": rates.activation_clips_per_s,
            "probe_fits_per_s": rates.probe_fits_per_s,
        },
        "budget_minutes": minutes,
        "chosen": {p.concept: {"clips": p.clips, "rung": p.rung, "seconds": p.seconds} for p in chosen},
        "chosen_seconds": sum(p.total_seconds for p in chosen),
        "largest": {p.concept: {"clips": p.clips, "seconds": p.seconds} for p in largest},
        "largest_seconds": sum(p.total_seconds for p in largest),
    }


def cold_build(minutes: float, device: str | None) -> dict:
    """A starter build of the tiny model with empty clip, activation and bank caches; the wall time against the
    projection it made."""
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["SYNTHEORY_CACHE"] = str(Path(scratch) / "syntheory")
        os.environ["MUSICRFM_HOME"] = str(Path(scratch) / "home")
        loaded = shaped_model("tiny", device=device)
        began = time.perf_counter()
        landed = build_starter(loaded, minutes=minutes, device=device)
        seconds = time.perf_counter() - began
        record = json.loads((Path(scratch) / "home" / "banks" / "tiny" / ".starter.json").read_text())
        # what the build projected for itself, from the rates it measured, with nothing cached yet
        rates = StageRates(**record["rates"])
        os.environ["SYNTHEORY_CACHE"] = str(Path(scratch) / "empty")
        projected = sum(plan_concept(c, record["rung"], rates, loaded.num_layers).total_seconds for c in STARTER)
    return {
        "wall_seconds": seconds,
        "projected_seconds": projected,
        "rung": record["rung"],
        "scores": {item.concept: _mean_score(item.bank) for item in landed},
        "clips": {item.concept: item.bank.dataset["n_clips"] for item in landed},
    }


def compare_full(device: str | None) -> dict:
    """Mean validation score (AUC; R^2 for tempos) of each starter rung and of the full recipe, on the tiny model."""
    loaded = shaped_model("tiny", device=device)
    cache = Path(tempfile.gettempdir()) / "musicrfm-bench-activations"
    out = {}
    for concept, subset in STARTER.items():
        rows = {}
        recipes = {f"rung {i}": subset.options(i) for i in range(len(subset.caps))}
        recipes["full"] = FULL[concept]
        for name, options in recipes.items():
            began = time.perf_counter()
            bank = train_concept_bank(
                loaded, concept, TrainOptions(**options, cache_dir=cache, device=device, progress=False)
            )
            rows[name] = {
                "clips": bank.dataset["n_clips"],
                "score": _mean_score(bank),
                "seconds": time.perf_counter() - began,
            }
            row = rows[name]
            print(f"  {concept:7} {name:7} {row['clips']:5} clips  mean {bank.val_metric} {row['score']:.3f}")
        top = rows[f"rung {len(subset.caps) - 1}"]["score"]
        rows["largest_minus_full"] = top - rows["full"]["score"]
        out[concept] = rows
    return out


def _mean_score(bank) -> float:
    return float(bank.trained_val_score.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="tiny,small,large", help="comma-separated: tiny, small, large")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="the starter's time budget")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    parser.add_argument("--build", action="store_true", help="also build the tiny model's starter banks, cold")
    parser.add_argument("--compare-full", action="store_true", help="tiny: each starter rung against the full recipe")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    figures: dict = {"machine": machine(), "device": device, "shapes": {}}
    print(describe(figures["machine"]))
    for shape in args.shapes.split(","):
        result = figures["shapes"][shape] = projection(shape, args.minutes, args.device)
        r = result["rates"]
        print(
            f"{shape:6} render {r['render_clips_per_s']:7.1f} clips/s  activations {r['activation_clips_per_s']:8.1f} "
            f"clips/s  probes {r['probe_fits_per_s']:8.1f} fits/s"
        )
        chosen = ", ".join(f"{c} {p['clips']}" for c, p in result["chosen"].items())
        largest = ", ".join(f"{c} {p['clips']}" for c, p in result["largest"].items())
        print(f"       {args.minutes:g} min budget: {chosen} clips, projected {result['chosen_seconds']:.0f} s")
        print(f"       largest subsets: {largest} clips, projected {result['largest_seconds']:.0f} s")
    if args.build:
        build = figures["build"] = cold_build(args.minutes, args.device)
        print(
            f"tiny starter build from a cold cache: {build['wall_seconds']:.0f} s, projected "
            f"{build['projected_seconds']:.0f} s (rung {build['rung']}: {json.dumps(build['clips'])} clips); mean "
            f"scores {json.dumps({k: round(v, 3) for k, v in build['scores'].items()})}"
        )
    if args.compare_full:
        print("starter subsets against the full recipe, tiny model:")
        figures["compare_full"] = compare_full(args.device)
        for concept, rows in figures["compare_full"].items():
            print(f"  {concept}: largest subset minus full {rows['largest_minus_full']:+.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
