"""`python -m probes train|pooling|starter|eval|publish|tiny-model ...`: train a ConceptBank for one concept; compare
poolings over time; the starter banks of a model; measure steering; publish a bank on the Hugging Face Hub; rebuild
the tiny model. Bad input: exit status 2 and one line."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from probes.activations import ALL_POOLINGS
from probes.bank import POOLINGS
from probes.cluster import add_ray_argument, connect, without_ray
from probes.directions import METHODS, ONE_DIRECTION
from probes.evaluate.cli import add_eval_arguments, run_eval
from probes.rfm import check_hparams
from probes.starter import DEFAULT_MINUTES, STARTER
from probes.syntheory import CONCEPTS
from studio.cli import OneLineParser
from studio.errors import Cancelled, InputError, RFMError, StudioError

CENTERING = {"no": False, "yes": True, "search": [False, True]}


def _int_or_name(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def _layer_token(text: str) -> list[int]:
    """'6' -> [6]; '4-8' -> [4, 5, 6, 7, 8] (inclusive). A negative index passes, to be refused as out of range."""
    try:
        return [int(text)]
    except ValueError:
        pass
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes layer indices or ranges like 4-8, got '{text}'") from None
    if high < low:
        raise argparse.ArgumentTypeError(f"--layers range '{text}' is empty; write it low-high, e.g. 4-8")
    return list(range(low, high + 1))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m probes", description="Train and evaluate RFM concept banks.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="render a SynTheory concept, fit RFM probes per layer, save a bank")
    train.add_argument("--model", default="tiny", help="hub id, save_pretrained folder or 'tiny'")
    train.add_argument("--concept", required=True, choices=sorted(CONCEPTS))
    train.add_argument("--out", required=True, help="bank folder to write (bank.safetensors + bank.json + plots)")
    train.add_argument("--instruments", nargs="+", type=_int_or_name, help="GM programs or names (default: all)")
    train.add_argument("--octaves", nargs="+", type=int, help="notes, instruments: octaves (4 holds middle C)")
    train.add_argument("--max-per-class", type=int, help="seeded cap on clips per class")
    train.add_argument(
        "--method",
        default="rfm",
        choices=METHODS,
        help="how the directions are found from the activations: RFM probes' AGOP eigenvectors (the default), the "
        "difference of class means, principal axes, ridge or logistic regression weights (one cache serves all)",
    )
    train.add_argument(
        "--components",
        type=int,
        default=None,
        help="directions kept per layer and class: at least 4 (default 4) for rfm and pca; the other methods have one",
    )
    train.add_argument("--readout-layer", default="best", help="'best' or a layer index (one of --layers)")
    train.add_argument(
        "--layers",
        nargs="+",
        type=_layer_token,
        metavar="L",
        help="decoder layers to train probes on: indices and inclusive ranges, e.g. '6 12 18' or "
        "'4-8' (default: all); the others stay untrained",
    )
    search = train.add_argument_group(
        "RFM hyper-parameter search",
        "Lists are searched: every probe keeps its best combination on the validation split.",
    )
    search.add_argument(
        "--bandwidth-multiples",
        nargs="+",
        type=float,
        metavar="X",
        help="kernel bandwidths as multiples of the median pairwise distance of the training "
        "activations (default: 0.5 1 2)",
    )
    search.add_argument(
        "--exponents",
        nargs="+",
        type=float,
        metavar="G",
        help="kernel exponents in (0, 2]: 1 is the Laplace kernel, 2 the Gaussian (default: 1)",
    )
    search.add_argument(
        "--regs",
        nargs="+",
        type=float,
        metavar="R",
        help="ridge regularisation added to the kernel matrix, >= 0 (default: 1e-3)",
    )
    search.add_argument(
        "--center-grads",
        choices=sorted(CENTERING),
        help="subtract the mean gradient before the AGOP: no (default), yes, or search both",
    )
    search.add_argument(
        "--metric",
        choices=("per-probe", "shared"),
        help="the kernel metric M from round 1 on: each class's probe learns its own (per-probe, as xRFM run per "
        "class) or a layer's probes share the AGOP of all their classes (shared, the default: one kernel per layer and "
        "round)",
    )
    train.add_argument("--pooling", default="mean", choices=POOLINGS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    train.add_argument("--cache-dir", type=Path, default=None, help="activation cache (default .cache/activations)")
    add_ray_argument(train)
    add_eval_arguments(sub.add_parser("eval", help="baseline vs steered: probe accuracy, DSP checks, CLAP, FD/MMD"))
    pooling = sub.add_parser(
        "pooling", help="which pooling over time reads each concept best: mean, last, max, windows (order kept)"
    )
    pooling.add_argument("--model", default="tiny", help="hub id, save_pretrained folder or 'tiny'")
    pooling.add_argument("--concepts", nargs="+", required=True, choices=sorted(CONCEPTS))
    pooling.add_argument("--poolings", nargs="+", choices=ALL_POOLINGS, default=list(ALL_POOLINGS))
    pooling.add_argument("--out", required=True, type=Path, help="folder for pooling.csv and pooling.{html,png}")
    pooling.add_argument("--instruments", nargs="+", type=_int_or_name, help="GM programs or names (default: all)")
    pooling.add_argument("--octaves", nargs="+", type=int, help="notes, instruments: octaves (4 holds middle C)")
    pooling.add_argument("--max-per-class", type=int, help="seeded cap on clips per class")
    pooling.add_argument("--seed", type=int, default=0)
    pooling.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    pooling.add_argument("--cache-dir", type=Path, default=None, help="activation cache (default .cache/activations)")
    starter = sub.add_parser(
        "starter", help="notes, chords and tempos banks for a model in minutes, sized to a time budget (resumable)"
    )
    starter.add_argument("--model", default="tiny", help="hub id, save_pretrained folder or 'tiny'")
    starter.add_argument(
        "--minutes", type=float, default=DEFAULT_MINUTES, help="the time budget the subset is chosen for (default: 5)"
    )
    starter.add_argument(
        "--clips-per-class",
        type=int,
        default=None,
        help="skip the budget: N clips per class of every concept (tempos: per 20 BPM band)",
    )
    starter.add_argument("--concepts", nargs="+", choices=list(STARTER), default=list(STARTER))
    starter.add_argument("--out", type=Path, default=None, help="bank folder (default: the user's, see README)")
    starter.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")
    tiny = sub.add_parser("tiny-model", help="rebuild the tiny MusicGen that knows music, from SynTheory renders")
    tiny.add_argument(
        "--stage", choices=["all", "codec", "decoder"], default="all", help="what to build (decoder: on <out>/codec)"
    )
    tiny.add_argument("--out", type=Path, default=Path("assets/models/tiny"), help="where the model is saved")
    tiny.add_argument("--work", type=Path, default=Path(".cache/tinymusic"), help="checkpoints (a rerun resumes)")
    tiny.add_argument("--steps", type=int, default=None, help="training steps (default: the committed model's)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--clips-per-class", type=int, default=None, help="a trial build on at most N clips per class (default: all)"
    )
    publish = sub.add_parser(
        "publish",
        help="upload a bank to the Hugging Face Hub with a model card (or --dry-run: write what would be uploaded)",
    )
    publish.add_argument(
        "bank_dir", type=Path, metavar="BANK_DIR", help="the bank folder (bank.json + bank.safetensors)"
    )
    publish.add_argument("--repo", required=True, help="the Hub model repo, owner/name (created when new)")
    publish.add_argument("--subfolder", default=None, help="the folder in the repo for the bank (default: its root)")
    publish.add_argument(
        "--dry-run", type=Path, default=None, metavar="OUT_DIR", help="write the folder to OUT_DIR, upload nothing"
    )
    publish.add_argument("--private", action="store_true", help="create the repo private (when it is new)")
    return parser


def run_publish(args) -> int:
    """Upload a bank with its model card, or write what would be uploaded (--dry-run) and list it."""
    from probes.publish import upload, write_dry_run

    if args.dry_run is not None:
        files = write_dry_run(args.bank_dir, args.repo, args.subfolder, args.dry_run)
        print(f"wrote {args.dry_run}, the folder that would be uploaded to {args.repo}:")
        print("\n".join(f"  {name}" for name in files))
        return 0
    url = upload(args.bank_dir, args.repo, args.subfolder, args.private)
    print(f"published {args.bank_dir} to {url}")
    return 0


def run_train(args) -> int:
    from probes.figures import auc_by_layer_figure, save_figure, summary_table
    from probes.train import BANDWIDTH_MULTIPLES, TrainOptions, train_concept_bank
    from studio.model import load_model

    components = _components(args.method, args.components)
    readout = int(args.readout_layer) if args.readout_layer.isdigit() else args.readout_layer
    if readout != "best" and not isinstance(readout, int):
        raise InputError(f"--readout-layer must be 'best' or a layer index, got '{args.readout_layer}'")
    layers = _layer_list(args.layers)
    hparams = _search_hparams(args)
    same_name = ("instruments", "octaves", "max_per_class", "seed", "pooling", "method", "cache_dir", "device")
    with connect(args.ray) as cluster:  # first: an unreachable cluster is reported before a model loads
        loaded = load_model(args.model, device=args.device)
        _check_against_model(loaded, layers, readout, components)  # before any clip is rendered
        options = TrainOptions(
            **{name: getattr(args, name) for name in same_name},
            components=components,
            readout_layer=readout,
            layers=layers,
            bandwidth_multiples=tuple(args.bandwidth_multiples or BANDWIDTH_MULTIPLES),
            hparams=hparams,
            cluster=cluster,
        )
        bank = train_concept_bank(loaded, args.concept, options)
    bank.command = args.command_line  # published with the bank (its model card), so others can make it again
    out = Path(args.out)
    bank.save(out)
    files = save_figure(auc_by_layer_figure(bank), out / "auc_by_layer")
    print(summary_table(bank))
    print(f"saved {out} ({', '.join(f.name for f in files)})")
    return 0


def run_pooling(args) -> int:
    from probes.evaluate.report import write_csv
    from probes.figures import save_figure
    from probes.pooling import compare_poolings, pooling_figure, pooling_table
    from probes.train import TrainOptions
    from studio.model import load_model

    loaded = load_model(args.model, device=args.device)
    same_name = ("instruments", "octaves", "max_per_class", "seed", "cache_dir", "device")
    options = TrainOptions(**{name: getattr(args, name) for name in same_name})
    rows = compare_poolings(loaded, list(dict.fromkeys(args.concepts)), list(dict.fromkeys(args.poolings)), options)
    files = [write_csv(args.out / "pooling.csv", rows), *save_figure(pooling_figure(rows), args.out / "pooling")]
    print(pooling_table(rows))
    print(f"saved {', '.join(str(f) for f in files)}")
    return 0


def run_starter(args) -> int:
    from probes.starter import build_starter
    from studio.banks import origin
    from studio.model import load_model

    if args.minutes <= 0:
        raise InputError(f"--minutes must be > 0, got {args.minutes:g}")
    if args.clips_per_class is not None and args.clips_per_class < 2:
        raise InputError(f"--clips-per-class must be at least 2 (to train on and to check), got {args.clips_per_class}")
    loaded = load_model(args.model, device=args.device)
    bar = tqdm(total=1.0, bar_format="starter banks {percentage:3.0f}%|{bar}| {desc}")

    def show(progress) -> None:
        bar.n = progress.fraction
        bar.set_description_str(f"{progress.message}, about {progress.seconds_left / 60:.1f} min left", refresh=False)
        bar.update(0)  # redraws at most every 0.1 s

    def landed(item) -> None:
        scores = item.bank.trained_val_score
        how = "made" if item.made else "kept"
        bar.write(
            f"{item.concept}: {how}, mean validation {item.bank.val_metric.upper()} {float(scores.mean()):.3f} "
            f"(best layer {float(scores.mean(dim=1).max()):.3f}), {origin(item.folder)}"
        )

    try:
        build_starter(
            loaded,
            args.out,
            minutes=args.minutes,
            concepts=tuple(args.concepts),
            per_class=args.clips_per_class,
            device=args.device,
            on_progress=show,
            on_bank=landed,
            command=args.command_line,
        )
    except KeyboardInterrupt:
        raise Cancelled("interrupted; the banks made so far are kept: run the same command again to resume") from None
    finally:
        bar.close()
    return 0


def run_tiny_model(args) -> int:
    """Rebuild the tiny model (or one stage), deterministically (one thread, a fixed seed), resuming from --work."""
    import torch

    from probes.tinymusic.build import build_codec, build_decoder
    from probes.tinymusic.codec import CodecSettings
    from probes.tinymusic.decoder import DecoderSettings

    torch.set_num_threads(1)  # the same bytes on every run: float sums must not depend on the thread count
    stages = ["codec", "decoder"] if args.stage == "all" else [args.stage]
    if args.steps is not None and (len(stages) > 1 or args.steps < 1):
        raise InputError(f"--steps must be at least 1 and needs one --stage (codec or decoder), got {args.steps}")
    if args.clips_per_class is not None and args.clips_per_class < 1:
        raise InputError(f"--clips-per-class must be at least 1, got {args.clips_per_class}")
    steps = {} if args.steps is None else {"steps": args.steps}
    per_class = args.clips_per_class
    trial = "" if per_class is None else f"-{per_class}-per-class"  # never resume one build from another's checkpoint
    if "codec" in stages:
        settings = CodecSettings(seed=args.seed, **steps)
        work = args.work / f"codec-seed{args.seed}-steps{settings.steps}{trial}"
        report = build_codec(args.out, work, settings, per_class=per_class)
        print(
            f"codec saved in {args.out / 'codec'}: basic-pitch hears the right pitch class in "
            f"{report['reconstructed_accuracy']:.1%} of {report['held_out_notes']} held-out notes after the codec "
            f"({report['original_accuracy']:.1%} of the originals)"
        )
    if "decoder" in stages:
        settings = DecoderSettings(seed=args.seed, **steps)
        work = args.work / f"decoder-seed{args.seed}-steps{settings.steps}{trial}"
        # a trial build's model has learned little: one seed of generated notes is judgement enough
        report = build_decoder(args.out, work, settings, seeds=5 if per_class is None else 1, per_class=per_class)
        effect = report["caption_effect"]
        print(
            f"MusicGen saved in {args.out / 'musicgen'}: basic-pitch hears the named pitch class in "
            f"{report['prompt_adherence']:.1%} of generated notes; held-out loss of the first frames "
            f"{effect['right_class']:.3f} with the right class, {effect['class_6_semitones_off']:.3f} with one 6 "
            f"semitones off"
        )
    return 0


def _layer_list(tokens: list[list[int]] | None) -> tuple[int, ...] | None:
    """--layers as an ascending tuple; a layer named twice is refused (it is most likely a typo)."""
    if tokens is None:
        return None
    layers = [layer for token in tokens for layer in token]
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise InputError(f"--layers names layer(s) {', '.join(map(str, repeated))} more than once")
    return tuple(sorted(layers))


def _search_hparams(args) -> dict:
    """The RFM search options given on the command line (absent ones keep the defaults), checked before any work."""
    if args.bandwidth_multiples and min(args.bandwidth_multiples) <= 0:
        raise InputError(f"--bandwidth-multiples must all be > 0, got {args.bandwidth_multiples}")
    hparams = {}
    for flag, name, values in (("--exponents", "exponent", args.exponents), ("--regs", "reg", args.regs)):
        if values:
            hparams[name] = values[0] if len(values) == 1 else list(values)
            try:
                check_hparams({name: hparams[name]})
            except RFMError as err:
                raise InputError(f"{flag}: {err}") from None
    if args.center_grads is not None:
        hparams["center_grads"] = CENTERING[args.center_grads]
    if args.metric is not None:
        hparams["shared_metric"] = args.metric == "shared"
    return hparams


def _components(method: str, components: int | None) -> int:
    """K for --method: at least 4 (default 4) where the method has K directions, 1 where it has one."""
    if method in ONE_DIRECTION:
        if components not in (None, 1):
            raise InputError(
                f"--method {method} finds one direction per layer and class; leave --components out, got {components}"
            )
        return 1
    components = 4 if components is None else components
    if components < 4:
        raise InputError(f"--components must be at least 4 for --method {method}, got {components}")
    return components


def _check_against_model(loaded, layers: tuple[int, ...] | None, readout: int | str, components: int) -> None:
    """Refuse layers, readout layer and component counts the model cannot have."""
    top = loaded.num_layers - 1
    if layers is not None and (layers[0] < 0 or layers[-1] > top):
        raise InputError(
            f"--layers must be decoder layers 0..{top} of {loaded.model_id}, got {' '.join(map(str, layers))}"
        )
    if isinstance(readout, int):
        if readout > top:
            raise InputError(f"--readout-layer must be a decoder layer 0..{top} of {loaded.model_id}, got {readout}")
        if layers is not None and readout not in layers:
            raise InputError(
                f"--readout-layer {readout} is not among --layers ({' '.join(map(str, layers))}); "
                f"add it there or use 'best'"
            )
    if components > loaded.hidden_size:
        raise InputError(
            f"--components must be at most the hidden size of {loaded.model_id} "
            f"({loaded.hidden_size}), got {components}"
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        # as typed, for the bank it makes; without --ray, which changes no result
        args.command_line = "python -m probes " + shlex.join(without_ray(argv, getattr(args, "ray", None)))
        runs = {
            "train": run_train,
            "pooling": run_pooling,
            "starter": run_starter,
            "eval": run_eval,
            "publish": run_publish,
            "tiny-model": run_tiny_model,
        }
        return runs[args.command](args)
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
