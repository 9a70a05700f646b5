"""The `eval` command of `python -m probes`: its arguments (``add_eval_arguments``) and ``run_eval(args)``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from probes.cluster import add_ray_argument, connect
from probes.directions import METHODS

from .conditions import PAPER_GATES, PAPER_LAYER_MODES, PAPER_STRENGTHS, SWEEPS
from .runner import CLOSED_TARGETS, DEFAULT_EXPERIMENTS, DEFAULT_PROMPTS, EXPERIMENTS, EvalSettings

log = logging.getLogger(__name__)


def _pair(text: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"a pair is CLASS:CLASS (e.g. C:major), got '{text}'")
    return parts[0], parts[1]


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the eval options to `parser` (a subcommand parser) and return it."""
    add = parser.add_argument
    add("--out", required=True, type=Path, help="results folder (re-running with the same folder reuses its clips)")
    add("--model", default="tiny", help="hub id, save_pretrained folder or 'tiny'")
    add(
        "--bank",
        default=None,
        help="folder with one bank per concept, or a bank name under assets/banks (default: assets/banks/<model name>)",
    )
    add("--concept", default="notes", help="the concept to steer and measure")
    add("--targets", nargs="+", help="target classes (default: three spread over the bank's classes)")
    add("--prompts", nargs="+", default=list(DEFAULT_PROMPTS), help="text prompts")
    add("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="generation seeds (also seed the gates)")
    add("--seconds", type=float, default=10.0, help="clip length")
    add("--guidance-scale", type=float, default=3.0)
    add(
        "--experiments",
        nargs="+",
        choices=EXPERIMENTS,
        help=f"default: {' '.join(DEFAULT_EXPERIMENTS)}; with --methods or --closed alone: those",
    )
    add(
        "--methods",
        nargs="*",
        choices=METHODS,
        metavar="METHOD",
        help=f"the methods experiment: steer with the directions of each method ({', '.join(METHODS)}; none named: "
        "all), RFM's first four one by one, each method's bank trained on the --bank bank's data into <out>/banks",
    )
    add(
        "--closed",
        nargs="*",
        type=float,
        metavar="P",
        help="the closed-loop experiment: hold the readout of the target at each probability P (none named: "
        f"{' '.join(f'{p:g}' for p in CLOSED_TARGETS)}) against fixed --strengths, compared at equal accuracy",
    )
    add(
        "--closed-ceiling",
        type=float,
        default=None,
        help="the closed-loop arms' ceiling on their strength (default: the largest --strengths value)",
    )
    add(
        "--sweep",
        default="paper",
        choices=SWEEPS,
        help="paper: vary one factor at a time around strength 0.3, exp0.95, p 0.3; product: every combination",
    )
    add("--strengths", nargs="+", type=float, default=list(PAPER_STRENGTHS))
    add("--layer-modes", nargs="+", default=list(PAPER_LAYER_MODES), help="uniform, top<K>, exp<kappa>")
    add("--gates", nargs="+", type=float, default=list(PAPER_GATES), help="gate probabilities p")
    add("--crossfade", nargs=2, metavar=("N1", "N2"), help="classes of the crossfade (default: first two targets)")
    add("--crossfade-strength", type=float, default=0.45)
    add(
        "--crossfade-span",
        type=float,
        default=None,
        help="seconds of the handover, centred on the clip's middle (default: the whole clip, as in the paper)",
    )
    add("--readout-window", type=float, default=1.0, help="seconds of the sliding readout window")
    add("--multi-concept", default="chords", help="second concept of the multi-concept experiment")
    add("--multi-pairs", nargs="+", type=_pair, metavar="A:B", help="class pairs, e.g. C:major E:minor")
    add("--multi-strength", type=float, default=0.6, help="strength of each concept (the paper's figure: 0.6)")
    add(
        "--target-bpm",
        type=float,
        default=None,
        help="tempos only: the tempo steering aims for; a clip is a DSP "
        "hit when its measured tempo is within 4%% of it",
    )
    add(
        "--clap",
        default=None,
        help="local CLAP checkpoint folder (ClapModel + ClapProcessor); without it CLAP "
        "is skipped and the results say so",
    )
    add("--device", default=None, help="cpu | cuda (default: cuda when present)")
    add(
        "--drift-layer",
        type=int,
        default=None,
        help="decoder layer of the FD/MMD embeddings (default: the bank's readout layer)",
    )
    add("--bootstrap", type=int, default=2000, help="bootstrap resamples for the confidence intervals")
    add("--ci-seed", type=int, default=0)
    add("--no-progress", action="store_true", help="no progress bars")
    add_ray_argument(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    return EvalSettings(
        out=args.out,
        model=args.model,
        bank=args.bank,
        concept=args.concept,
        targets=args.targets,
        prompts=args.prompts,
        seeds=args.seeds,
        seconds=args.seconds,
        guidance_scale=args.guidance_scale,
        strengths=args.strengths,
        layer_modes=args.layer_modes,
        gates=args.gates,
        sweep=args.sweep,
        experiments=_experiments(args),
        methods=list(args.methods or METHODS),
        closed=list(args.closed or CLOSED_TARGETS),
        closed_ceiling=args.closed_ceiling,
        crossfade=args.crossfade,
        crossfade_strength=args.crossfade_strength,
        crossfade_span_s=args.crossfade_span,
        readout_window_s=args.readout_window,
        multi_concept=args.multi_concept,
        multi_pairs=args.multi_pairs,
        multi_strength=args.multi_strength,
        target_bpm=args.target_bpm,
        clap=args.clap,
        device=args.device,
        drift_layer=args.drift_layer,
        resamples=args.bootstrap,
        ci_seed=args.ci_seed,
        progress=not args.no_progress,
    )


def _experiments(args: argparse.Namespace) -> list[str]:
    """--experiments as given (the defaults when not), with methods and closed added when --methods and --closed are
    given; either alone runs only its experiment."""
    named = [name for name in ("methods", "closed") if getattr(args, name) is not None]
    asked = args.experiments or ([] if named else list(DEFAULT_EXPERIMENTS))
    return list(dict.fromkeys(asked + named))


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None or value == "" else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _condition_lines(table: list[dict]) -> list[str]:
    """A table of conditions (the sweep's, or the methods experiment's). The dsp column is the DSP accuracy, or the
    mean measured tempo (BPM) for tempos without --target-bpm; b-p the accuracy of what basic-pitch transcribes (notes
    and chords)."""
    lines = [f"{'condition':<30} {'probe':>6} {'95% CI':>13} {'dsp':>6} {'b-p':>6} {'clap':>6} {'FD':>9} {'MMD2':>9}"]
    for row in table:
        ci = f"[{_fmt(row.get('probe_acc_low'), 2)},{_fmt(row.get('probe_acc_high'), 2)}]"
        lines.append(
            f"{row['condition']:<30} {_fmt(row.get('probe_acc', row.get('probe_value'))):>6} {ci:>13} "
            f"{_fmt(row.get('dsp_acc', row.get('dsp_value'))):>6} {_fmt(row.get('bp_acc')):>6} "
            f"{_fmt(row.get('clap')):>6} "
            f"{_fmt(row['fd_acts'], 4):>9} {_fmt(row['mmd_acts'], 4):>9}"
        )
    return lines


def _sweep_lines(sweep: dict) -> list[str]:
    """The sweep table (condition names carry the K a top-K used), then one line per merge of identical conditions."""
    lines = _condition_lines(sweep["table"])
    for mode, k in sweep.get("clamped", {}).items():
        lines.append(f"{mode} asks for more layers than the model steers: run with k={k}")
    for merge in sweep.get("merged", []):
        lines.append(f"same steering on this model, run once as {merge['kept']}: {', '.join(merge['requested'])}")
    return lines


def _crossfade_line(c: dict) -> str:
    """Scheduled and measured crossover (over the clips that crossed; how many did not), and the thirds' readings."""
    m = c["measured_s"]
    if m is None:
        measured = f"no crossover in any of the {c['n_clips']} clips"
    else:
        measured = f"measured {m['mean']:.2f} s [{m['low']:.2f}, {m['high']:.2f}]"
        if c["no_crossover"]:
            measured += f" ({c['no_crossover']} of {c['n_clips']} clips: no crossover)"
    heard = ""
    if c.get("first_third_bp_acc") is not None:
        heard = (
            f"; basic-pitch hears {c['first']} in the first third: {_fmt(c['first_third_bp_acc'])}, "
            f"{c['second']} in the last: {_fmt(c['last_third_bp_acc'])}"
        )
    return (
        f"crossfade {c['first']} -> {c['second']}: scheduled {_fmt(c['scheduled_s'], 2)} s, {measured}, "
        f"first third reads {c['first']}: {_fmt(c['first_third_probe_acc'])}, last third reads "
        f"{c['second']}: {_fmt(c['last_third_probe_acc'])}{heard}"
    )


def _closed_line(row: dict, table: list[dict]) -> str:
    """A closed arm's mean strength, and its drift against fixed strength's at the same accuracy (by each judge)."""
    parts = []
    for suffix, judge, column in (("", "probe", "probe_acc"), ("_bp", "basic-pitch", "bp_acc")):
        same = row.get(f"fd_fixed_same_acc{suffix}")
        if same is not None:
            saving = row[f"fd_saving{suffix}"]
            parts.append(f"{judge}: fixed strength needs FD {same:.3f} for that accuracy ({saving:+.0%} drift saved)")
        elif f"fd_fixed_same_acc{suffix}" in row:
            best = max((r for r in table if r["arm"] == "fixed"), key=lambda r: r[column])
            more = "more" if row[column] > best[column] else "less"
            parts.append(f"{judge}: {more} accurate than every fixed strength (the most: FD {best['fd_acts']:.3f})")
    return f"{row['condition']}: mean strength {row['mean_strength']:.2f}, FD {row['fd_acts']:.3f}; " + "; ".join(parts)


def format_summary(summary: dict) -> str:
    """The headline numbers as plain text tables."""
    lines = []
    if "sweep" in summary:
        lines += _sweep_lines(summary["sweep"])
    if "crossfade" in summary:
        lines.append(_crossfade_line(summary["crossfade"]))
    if "multi" in summary:
        for row in summary["multi"]["table"]:
            lines.append(
                f"multi {row['pair']:<20} {row['concept']:<8} acc {_fmt(row.get('probe_acc'))} "
                f"(baseline {_fmt(row.get('baseline_probe_acc'))}), FD {_fmt(row['fd_acts'], 4)}"
            )
    if "methods" in summary:
        lines.append("direction methods (method #direction), all judged by the --bank bank's readout probe:")
        lines += _condition_lines(summary["methods"]["table"])
    if "closed" in summary:
        lines.append("closed loop (-t<P>: the readout held at P) against fixed strength:")
        lines += _condition_lines(summary["closed"]["table"])
        table = summary["closed"]["table"]
        lines += [_closed_line(row, table) for row in table if row["arm"] == "closed"]
    if summary["clap"]["status"] != "ok":
        lines.append(f"CLAP skipped: {summary['clap']['reason']}")
    clips = summary["clips"]
    where = f" ({clips['on_cluster']} on the Ray cluster)" if "on_cluster" in clips else ""
    lines.append(f"clips: {clips['rendered']} rendered{where}, {clips['reused']} reused")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    """Run `python -m probes eval`; prints the summary tables and where the files are. Bad input raises StudioError."""
    from .pipeline import run_evaluation

    settings = settings_from_args(args)
    with connect(args.ray, progress=settings.progress) as cluster:
        summary = run_evaluation(settings, cluster=cluster)
    print(format_summary(summary))
    print(f"results in {settings.out}")
    return 0
