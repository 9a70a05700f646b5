"""`python -m probes train|eval ...`: train a ConceptBank for one concept; measure steering. Bad input: exit status 2
and one line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from probes.bank import BankError
from probes.evaluate.cli import add_eval_arguments, run_eval
from probes.rfm import RFMError
from probes.syntheory import CONCEPTS, SynTheoryError
from studio.cli import UsageError, _Parser
from studio.model import ModelLoadError


def _int_or_name(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m probes", description="Train and evaluate RFM concept banks.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="render a SynTheory concept, fit RFM probes per layer, save a bank")
    train.add_argument("--model", default="tiny", help="hub id, save_pretrained folder or 'tiny'")
    train.add_argument("--concept", required=True, choices=sorted(CONCEPTS))
    train.add_argument("--out", required=True, help="bank folder to write (bank.safetensors + bank.json + plots)")
    train.add_argument("--instruments", nargs="+", type=_int_or_name, help="GM programs or names (default: all)")
    train.add_argument("--octaves", nargs="+", type=int, help="notes only: scientific octaves, 4 holds middle C")
    train.add_argument("--max-per-class", type=int, help="seeded cap on clips per class")
    train.add_argument("--components", type=int, default=4, help="eigenvectors kept per layer and class (K >= 4)")
    train.add_argument("--readout-layer", default="best", help="'best' or a layer index")
    train.add_argument("--pooling", default="mean", choices=["mean", "last", "max"])
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    train.add_argument("--cache-dir", type=Path, default=None, help="activation cache (default .cache/activations)")
    add_eval_arguments(sub.add_parser("eval", help="baseline vs steered: probe accuracy, DSP checks, CLAP, FD/MMD"))
    return parser


def run_train(args) -> int:
    from probes.train import TrainOptions, train_concept_bank
    from studio.model import load_model
    from studio.plots import auc_by_layer_figure, save_figure

    if args.components < 4:
        raise UsageError(f"--components must be at least 4, got {args.components}")
    readout = int(args.readout_layer) if args.readout_layer.isdigit() else args.readout_layer
    if readout != "best" and not isinstance(readout, int):
        raise UsageError(f"--readout-layer must be 'best' or a layer index, got '{args.readout_layer}'")
    loaded = load_model(args.model, device=args.device, warmup=False)
    options = TrainOptions(instruments=args.instruments, octaves=args.octaves, max_per_class=args.max_per_class,
                           seed=args.seed, pooling=args.pooling, components=args.components, readout_layer=readout,
                           cache_dir=args.cache_dir, device=args.device)
    bank = train_concept_bank(loaded, args.concept, options)
    out = Path(args.out)
    bank.save(out)
    files = save_figure(auc_by_layer_figure(bank), out / "auc_by_layer")
    print(summary_table(bank))
    print(f"saved {out} ({', '.join(f.name for f in files)})")
    return 0


def summary_table(bank) -> str:
    """Validation score per layer: mean, worst and best class, the readout layer starred."""
    metric = bank.val_metric.upper()
    rows = [f"{'layer':>5}  {'mean ' + metric:>9}  {'min':>6}  {'max':>6}"]
    for layer, scores in enumerate(bank.val_auc):
        star = "  * readout" if layer == bank.readout_layer else ""
        rows.append(f"{layer:>5}  {scores.mean():>9.3f}  {scores.min():>6.3f}  {scores.max():>6.3f}{star}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        return {"train": run_train, "eval": run_eval}[args.command](args)
    except (UsageError, ModelLoadError, SynTheoryError, BankError, RFMError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
