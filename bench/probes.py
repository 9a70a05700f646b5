"""Benchmark: our batched RFM (probes/rfm.py) against xRFM, training every layer x every one-vs-rest note probe.

Ours runs with each kernel metric of ``probes train --metric``: per-probe (every class's probe learns its own M from
round 1 on, the same computation as xRFM run once per class) and shared (a layer's classes share one M, the AGOP of
all their outputs, so each layer and round needs one kernel and one factorisation for all classes).

Stand-in features of musicgen-small's shape by default (9,936 clips, 24 layers, d = 1024, 12 pitch classes): Gaussian
noise plus a class signal along random per-class directions that grows with depth, so the AUCs mean something. Both
sides get the same data, split and hyper-parameters (Laplace kernel, bandwidth, reg, rounds, M rescaled by its largest
entry as xRFM does, no early stopping so both do the same number of rounds); xRFM is called once per (layer, class)
and also computes the AGOP of its kept model, which is what gives the directions. Prints seconds, the ratio and AUCs.

    python bench/probes.py                                   # full size (a GPU; the CPU takes hours)
    python bench/probes.py --n 2000 --d 256 --layers 4       # a reduced size for a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe, machine  # noqa: E402
from probes.rfm import binary_auc, fit_rfm_layers  # noqa: E402


def stand_in_features(n: int, layers: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[layers, n, d] features and [n] labels: noise + strength_l * (class direction), strength rising with depth."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randperm(n, generator=gen) % classes  # balanced classes
    X = torch.randn(layers, n, d, generator=gen)
    for layer, strength in enumerate(torch.linspace(0.3, 1.5, layers).tolist()):
        axes = torch.randn(classes, d, generator=gen)
        X[layer] += strength * (axes / axes.norm(dim=1, keepdim=True))[labels] * 2
    return X, labels


def run_ours(X, y, Xv, yv, args, metric: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    _sync(args.device)
    start = time.perf_counter()
    fits = fit_rfm_layers(
        X,
        y,
        Xv,
        yv,
        task="multiclass",
        n_classes=args.classes,
        one_vs_rest=True,
        k=1,
        device=args.device,
        bandwidth=args.bandwidth,
        exponent=args.exponent,
        reg=args.reg,
        iters=args.rounds,
        early_stop=False,
        m_norm="max_entry",
        shared_metric=metric == "shared",
        progress=args.progress,
    )
    _sync(args.device)
    return time.perf_counter() - start, fits.val_score, fits.directions[:, :, 0]


def run_xrfm(X, y, Xv, yv, args) -> tuple[float, torch.Tensor, torch.Tensor]:
    from xrfm import RFM
    from xrfm.rfm_src.class_conversion import ClassificationConverter

    L, d = X.shape[0], X.shape[2]
    aucs, tops = torch.zeros(L, args.classes), torch.zeros(L, args.classes, d)
    elapsed = 0.0
    for layer in range(L):
        Xl, Xvl = X[layer].to(args.device), Xv[layer].to(args.device)
        for c in range(args.classes):
            _sync(args.device)
            start = time.perf_counter()
            model = RFM(
                kernel="laplace",
                bandwidth=args.bandwidth,
                exponent=args.exponent,
                iters=args.rounds - 1,
                device=args.device,
                tuning_metric="auc",
                verbose=False,
                class_converter=ClassificationConverter("zero_one", 2),
            )
            target, target_val = ((labels == c).float()[:, None].to(args.device) for labels in (y, yv))
            model.fit(
                (Xl, target),
                (Xvl, target_val),
                reg=args.reg,
                iters=args.rounds - 1,
                early_stop_rfm=False,
                verbose=False,
                get_agop_best_model=True,
            )
            pred = model.predict(Xvl)[:, 0]
            _sync(args.device)
            elapsed += time.perf_counter() - start
            aucs[layer, c] = binary_auc(pred.cpu(), yv == c).float()
            tops[layer, c] = torch.linalg.eigh(model.agop_best_model.float().cpu())[1][:, -1]
    return elapsed, aucs, tops


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=9936, help="clips (train + validation)")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--val-frac", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=4, help="kernel fits per probe (xRFM iters = rounds - 1)")
    parser.add_argument("--bandwidth", type=float, default=10.0)
    parser.add_argument("--exponent", type=float, default=1.0)
    parser.add_argument("--reg", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run both sides this many times (alternating); "
        "the fastest run of each counts (other load on the machine only ever slows a run down)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        choices=("shared", "per-probe"),
        default=["shared", "per-probe"],
        help="our kernel metrics to time (default: both)",
    )
    parser.add_argument("--skip-xrfm", action="store_true", help="time ours only")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    X, y = stand_in_features(args.n, args.layers, args.d, args.classes, args.seed)
    n_val = int(args.n * args.val_frac)
    X_train, X_val, y_train, y_val = X[:, n_val:], X[:, :n_val], y[n_val:], y[:n_val]
    about = machine()
    print(describe(about))
    print(
        f"device {args.device} ({torch.get_num_threads()} CPU threads), {args.layers} layers x {args.classes} "
        f"one-vs-rest probes, n_train {args.n - n_val}, n_val {n_val}, d {args.d}, {args.rounds} rounds, "
        f"bandwidth {args.bandwidth}, exponent {args.exponent}, reg {args.reg}"
    )

    # A small warm-up run of each side keeps one-time set-up out of the timings.
    warm = (X_train[:1, :200], y_train[:200], X_val[:1, :100], y_val[:100])
    for metric in args.metrics:
        run_ours(*warm, argparse.Namespace(**{**vars(args), "progress": False}), metric)
    sides = {
        f"ours {metric}": (lambda metric=metric: run_ours(X_train, y_train, X_val, y_val, args, metric))
        for metric in args.metrics
    }
    if not args.skip_xrfm:
        run_xrfm(*warm, argparse.Namespace(**{**vars(args), "classes": 1}))
        sides["xRFM"] = lambda: run_xrfm(X_train, y_train, X_val, y_val, args)
    runs = {name: [] for name in sides}
    for _ in range(args.repeats):  # alternating, so that load on the machine falls on every side alike
        for name, run in sides.items():
            runs[name].append(run())
    fastest = {name: min(side_runs, key=lambda run: run[0]) for name, side_runs in runs.items()}
    figures = {
        "machine": about,
        "device": args.device,
        "n": args.n,
        "d": args.d,
        "layers": args.layers,
        "classes": args.classes,
        "seconds": {name: run[0] for name, run in fastest.items()},
        "mean_val_auc": {name: run[1].mean().item() for name, run in fastest.items()},
    }
    for name, (seconds, auc, _) in fastest.items():
        times = ", ".join(f"{run[0]:.2f}" for run in runs[name])
        print(f"{name:16s} {seconds:9.2f} s   mean val AUC {auc.mean():.4f}   (runs: {times} s)")
    if not args.skip_xrfm:
        figures["vs_xrfm"] = compare_with_xrfm(fastest, args.layers)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def compare_with_xrfm(fastest: dict, layers: int) -> dict:
    """Print and return each of our metrics' speed-up over xRFM and how far its AUCs and directions are from xRFM's."""
    xrfm_s, xrfm_auc, xrfm_top = fastest.pop("xRFM")
    figures = {}
    for name, (seconds, auc, top) in fastest.items():
        layer_diff = (auc.mean(1) - xrfm_auc.mean(1)).abs()
        cos = (top * xrfm_top).sum(-1).abs()
        figures[name] = {
            "speedup": xrfm_s / seconds,
            "max_layer_mean_auc_diff": layer_diff.max().item(),
            "max_probe_auc_diff": (auc - xrfm_auc).abs().max().item(),
            "min_top_direction_cos": cos.min().item(),
        }
        print(
            f"{name}: speed-up (xRFM s / ours s) {xrfm_s / seconds:.2f}x; mean AUC per layer |ours - xRFM| max "
            f"{layer_diff.max():.5f}; per probe |AUC diff| max {(auc - xrfm_auc).abs().max():.5f}; "
            f"top direction |cos| min {cos.min():.4f}, mean {cos.mean():.4f}"
        )
    print("layer  " + "  ".join(f"{name:>16s}" for name in [*fastest, "xRFM"]) + "   (mean val AUC)")
    for layer in range(layers):
        values = [auc[layer].mean() for _, auc, _ in fastest.values()] + [xrfm_auc[layer].mean()]
        print(f"{layer:5d}  " + "  ".join(f"{value:16.4f}" for value in values))
    return figures


if __name__ == "__main__":
    main()
