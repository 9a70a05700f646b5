"""`python -m probes eval`: settings, the shared context of the experiments, and the run that ties them together.

A run writes into one folder:

    run.json          settings, model signature, banks (folder, digest, classes), conditions, targets, prompts, seeds
    clips/            every rendered clip (WAV) with its render record (JSON: the recipe as run, seed included)
    clips.csv         one row per (clip, concept, target): probe, DSP and CLAP results and the clip's file
    sweep.csv         one row per condition (and the baseline): means with bootstrap intervals, FD and MMD to the
                      baseline (per target, over the same prompts and seeds, then averaged over targets)
    pareto_drift.*    control against drift (HTML + PNG); pareto_clap.* when CLAP was measured
    crossfade.csv     per clip: scheduled and measured crossover, and the re-encoded first/last third's classes
    crossfade.*       readout over time
    multi.csv, interference.csv, interference.*   the two-concept experiment
    banks/<method>/<concept>, methods.csv, methods_drift.*   the direction methods side by side (--methods)
    closed.csv, closed_drift.*   closed-loop steering against fixed strength at equal accuracy (--closed)
    summary.json      the aggregates of every experiment, what was skipped and why, clips rendered and reused

Resuming: clips already in clips/ are reused (see clips.py); everything else is recomputed from them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from probes.directions import METHODS, check_method
from studio.errors import EvaluationError
from studio.recipe import MAX_STRENGTH, Recipe

from .clap import NO_CHECKPOINT_REASON, ClapScorer
from .clips import ClipStore, StoredClip, bank_digest
from .conditions import PAPER_GATES, PAPER_LAYER_MODES, PAPER_STRENGTHS, recipe, sweep_conditions
from .measure import ClipSetFacts, measure
from .metrics import drift_against

log = logging.getLogger(__name__)

EXPERIMENTS = ("sweep", "crossfade", "multi", "methods", "closed")
DEFAULT_EXPERIMENTS = ("sweep", "crossfade", "multi")  # methods trains a bank per direction method: asked for by name
CLOSED_TARGETS = (0.5, 0.7, 0.9)  # the closed-loop experiment's target probabilities
DEFAULT_PROMPTS = (
    "a calm solo piano piece",
    "an upbeat electronic dance track",
    "an acoustic folk song with guitar",
    "a cinematic orchestral score",
)


@dataclass
class EvalSettings:
    """Everything a run depends on (recorded in run.json). Lists default to the paper's sweep."""

    out: Path
    model: str = "tiny"
    bank: str | None = None  # as a recipe's "bank": folder of concept banks, or a name
    concept: str = "notes"
    targets: list[str] | None = None  # None: three classes spread over the bank's classes
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seconds: float = 10.0
    guidance_scale: float = 3.0
    strengths: list[float] = field(default_factory=lambda: list(PAPER_STRENGTHS))
    layer_modes: list[str] = field(default_factory=lambda: list(PAPER_LAYER_MODES))
    gates: list[float] = field(default_factory=lambda: list(PAPER_GATES))
    sweep: str = "paper"
    experiments: list[str] = field(default_factory=lambda: list(DEFAULT_EXPERIMENTS))
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # the methods experiment's direction methods
    closed: list[float] = field(default_factory=lambda: list(CLOSED_TARGETS))  # the closed-loop experiment's targets
    closed_ceiling: float | None = None  # its arms' ceiling; None: the largest of `strengths`
    crossfade: list[str] | None = None  # [n1, n2]; None: the first two targets
    crossfade_strength: float = 0.45
    crossfade_span_s: float | None = None  # seconds of the ramps, centred on the clip's middle; None: the whole clip
    readout_window_s: float = 1.0
    multi_concept: str = "chords"
    multi_pairs: list[tuple[str, str]] | None = None  # [(class of concept, class of multi_concept)]
    multi_strength: float = 0.6  # the paper's notes + chords figure
    target_bpm: float | None = None  # tempos: a clip is a DSP hit within 4% of this tempo
    clap: str | None = None
    device: str | None = None
    drift_layer: int | None = None  # None: the concept bank's readout layer
    confidence: float = 0.95
    resamples: int = 2000
    ci_seed: int = 0
    progress: bool = True

    def to_dict(self) -> dict:
        out = asdict(self)
        out["out"] = str(self.out)
        return out


def slug(text: str) -> str:
    """A file-name-safe form of a class name or label ("3/4" -> "3_4", "vii°" -> "vii_")."""
    return re.sub(r"[^A-Za-z0-9#+.=-]", "_", text)


@dataclass(frozen=True)
class Job:
    """A clip to render: its recipe, where it goes, and the columns that describe it in the tables."""

    recipe: Recipe
    group: str
    stem: str
    info: dict


@dataclass
class Rendered:
    """Jobs with their clips and what was measured on them."""

    jobs: list[Job]
    clips: list[StoredClip]
    facts: ClipSetFacts

    def base_row(self, i: int, out: Path) -> dict:
        return {**self.jobs[i].info, "file": str(self.clips[i].path.relative_to(out))}


class Context:
    """What every experiment shares: the model, banks, clip store, CLAP, targets, the baseline and the drift kernel."""

    def __init__(self, settings: EvalSettings, loaded, banks: dict, clap: ClapScorer | None):
        self.settings = settings
        self.out = Path(settings.out)
        self.loaded = loaded
        self.banks = banks
        self.bank = banks[settings.concept]
        self.clap = clap
        self.clap_reason = "" if clap else NO_CHECKPOINT_REASON
        self.store = ClipStore(self.out / "clips", loaded, banks, settings.bank)
        self.targets = settings.targets or default_targets(self.bank.classes)
        self.drift_layer = self.bank.readout_layer if settings.drift_layer is None else settings.drift_layer
        if not 0 <= self.drift_layer < loaded.num_layers:
            raise EvaluationError(
                f"--drift-layer must be a decoder layer 0..{loaded.num_layers - 1}, got {self.drift_layer}"
            )
        self._baseline: Rendered | None = None
        self._check_classes()

    def _check_classes(self) -> None:
        """Every class the run will steer must exist in its bank: fail before anything is rendered."""
        s = self.settings
        need_classes = []
        if "crossfade" in s.experiments or "multi" in s.experiments:
            need_classes.append(s.concept)
        if "multi" in s.experiments:
            need_classes.append(s.multi_concept)
        for concept in need_classes:
            if self.banks[concept].readout.task == "regression":
                raise EvaluationError(
                    f"the {concept!r} bank is a regression bank, with no classes to hand over "
                    "between or to count hits of; run it with --experiments sweep"
                )
        for target in self.targets + (self.crossfade_pair() if "crossfade" in s.experiments else []):
            self.bank.class_index(target)
        if "multi" in s.experiments:
            for first, second in s.multi_pairs or []:
                self.bank.class_index(first)
                self.banks[s.multi_concept].class_index(second)

    def crossfade_pair(self) -> list[str]:
        """[n1, n2]: --crossfade, or the first two targets."""
        pair = list(self.settings.crossfade or self.targets[:2])
        if len(pair) != 2 or pair[0] == pair[1]:
            raise EvaluationError(f"the crossfade needs two different classes, got {pair}: give --crossfade N1 N2")
        return pair

    def recipe(
        self, prompt: str, seed: int, controls: list[dict], readout: dict | None = None, bank: str | None = None
    ) -> Recipe:
        """A recipe of this run; its banks are --bank's unless `bank` names others (see ClipStore.add_banks)."""
        s = self.settings
        return recipe(s.model, bank or s.bank, prompt, s.seconds, seed, controls, s.guidance_scale, readout)

    def prompt_seed_jobs(
        self,
        group: str,
        stem: str,
        info: dict,
        controls: list[dict],
        readout: dict | None = None,
        bank: str | None = None,
    ) -> list[Job]:
        """One job per (prompt, seed) with the same controls; stems end in -p<prompt index>-s<seed>."""
        return [
            Job(
                self.recipe(prompt, seed, controls, readout, bank),
                group,
                f"{stem}p{pi}-s{seed}",
                {**info, "prompt_index": pi, "prompt": prompt, "seed": seed},
            )
            for pi, prompt in enumerate(self.settings.prompts)
            for seed in self.settings.seeds
        ]

    def render(self, jobs: Sequence[Job], desc: str) -> list[StoredClip]:
        clips = []
        for job in tqdm(jobs, desc=desc, unit="clip", disable=not self.settings.progress):
            clips.append(self.store.get(job.recipe, job.group, job.stem))
        return clips

    def measure(
        self, audio: Sequence[np.ndarray], prompts: Sequence[str], concepts: Sequence[str], with_clap: bool = True
    ) -> ClipSetFacts:
        """Measure audio with the banks of `concepts` (and CLAP against `prompts` when loaded and asked for)."""
        clap, reason = (self.clap, self.clap_reason) if with_clap else (None, "not measured on these clips")
        return measure(
            self.loaded,
            {c: self.banks[c] for c in concepts},
            audio,
            self.loaded.sample_rate,
            prompts,
            self.drift_layer,
            self.bank.pooling,
            clap,
            reason,
            progress=self.settings.progress,
        )

    def render_and_measure(self, jobs: list[Job], desc: str, concepts: Sequence[str]) -> Rendered:
        clips = self.render(jobs, desc)
        return Rendered(jobs, clips, self.measure([c.audio for c in clips], [j.info["prompt"] for j in jobs], concepts))

    def baseline_jobs(self) -> list[Job]:
        return self.prompt_seed_jobs("baseline", "", {"condition": "baseline"}, [])

    def baseline(self) -> Rendered:
        """The unsteered clips (one per prompt and seed), measured with every loaded bank; rendered once per run."""
        if self._baseline is None:
            self._baseline = self.render_and_measure(self.baseline_jobs(), "baseline", list(self.banks))
        return self._baseline

    def drift(self, facts: ClipSetFacts, groups: Sequence[Sequence[int]] | None = None) -> dict:
        """Drift of a clip set from the baseline (metrics.drift_against): on pooled activations at the drift layer
        (fd_acts, mmd_acts) and on CLAP audio embeddings when measured (fd_clap, mmd_clap). `groups` splits the set
        into subsets the size of the baseline (one per target: the same prompts and seeds); the values are their
        means. None compares the whole set."""
        base = self.baseline().facts
        groups = [list(g) for g in groups] if groups is not None else [list(range(len(facts)))]
        drift = drift_against(base.activations, [facts.activations[g] for g in groups])
        out = {"fd_acts": drift["fd"], "mmd_acts": drift["mmd"]}
        if facts.clap.ok and base.clap.ok:
            drift = drift_against(base.clap.audio_embeddings, [facts.clap.audio_embeddings[g] for g in groups])
            out.update(fd_clap=drift["fd"], mmd_clap=drift["mmd"])
        return out

    def figure(self, fig, name: str) -> list[Path]:
        from probes.figures import save_figure

        return save_figure(fig, self.out / name)


def default_targets(classes: Sequence[str]) -> list[str]:
    """Three classes spread evenly over the bank's (all of them when there are three or fewer)."""
    if len(classes) <= 3:
        return list(classes)
    return [classes[i * len(classes) // 3] for i in range(3)]


def check_settings(s: EvalSettings) -> None:
    unknown = [e for e in s.experiments if e not in EXPERIMENTS]
    if unknown or not s.experiments:
        raise EvaluationError(
            f"unknown experiment(s) {unknown or '(none given)'}; choose from {', '.join(EXPERIMENTS)}"
        )
    if not s.prompts or not s.seeds:
        raise EvaluationError("give at least one prompt and one seed")
    if len(s.prompts) * len(s.seeds) < 2:
        raise EvaluationError(
            "drift (FD, MMD) compares sets of clips: give at least two (prompt, seed) pairs, e.g. --seeds 0 1"
        )
    if len(set(s.seeds)) != len(s.seeds) or len(set(s.prompts)) != len(s.prompts):
        raise EvaluationError("seeds and prompts must not repeat (a repeated pair renders the same clip twice)")
    if "multi" in s.experiments and s.multi_concept == s.concept:
        raise EvaluationError(
            f"the multi-concept experiment pairs --concept with --multi-concept; both are {s.concept!r}"
        )
    if s.crossfade_span_s is not None and not 0 < s.crossfade_span_s <= s.seconds:
        raise EvaluationError(
            f"--crossfade-span must be positive and at most the clip ({s.seconds:g} s), got {s.crossfade_span_s:g}"
        )
    if s.readout_window_s <= 0:
        raise EvaluationError(f"--readout-window must be positive, got {s.readout_window_s}")
    if s.resamples < 1 or not 0 < s.confidence < 1:
        raise EvaluationError("need --bootstrap >= 1 and a confidence strictly between 0 and 1")
    if s.target_bpm is not None and s.concept != "tempos":
        raise EvaluationError(f"--target-bpm is the target of the tempos concept; --concept is {s.concept!r}")
    if s.target_bpm is not None and not s.target_bpm > 0:
        raise EvaluationError(f"--target-bpm must be a positive tempo, got {s.target_bpm:g}")
    if "sweep" in s.experiments:
        sweep_conditions(s.strengths, s.layer_modes, s.gates, s.sweep)
    if "methods" in s.experiments:
        if not s.methods or len(set(s.methods)) != len(s.methods):
            raise EvaluationError(f"--methods needs distinct direction methods, got {s.methods}")
        for method in s.methods:
            check_method(method)
        sweep_conditions(s.strengths, s.layer_modes, s.gates)  # its strengths, layer mode and gate are checked too
    if "closed" in s.experiments:
        if not s.closed or len(set(s.closed)) != len(s.closed) or not all(0 < p <= 1 for p in s.closed):
            raise EvaluationError(f"--closed needs distinct target probabilities in (0, 1], got {s.closed}")
        ceiling = s.closed_ceiling if s.closed_ceiling is not None else max(s.strengths)
        if not 0 < ceiling <= MAX_STRENGTH:
            raise EvaluationError(f"the closed-loop ceiling must lie in (0, {MAX_STRENGTH:g}], got {ceiling:g}")
        if len(set(s.strengths)) < 2:
            raise EvaluationError("the closed-loop experiment compares against fixed strength: give two --strengths")
        sweep_conditions(s.strengths, s.layer_modes, s.gates)


def describe_run(ctx: Context) -> dict:
    """run.json: what this run is, so its numbers can be traced and repeated."""
    return {
        "settings": ctx.settings.to_dict(),
        "model": {**ctx.loaded.signature.__dict__, "dtype": str(ctx.loaded.dtype), "device": str(ctx.loaded.device)},
        "banks": {
            c: {
                "classes": list(b.classes),
                "readout_layer": b.readout_layer,
                "pooling": b.pooling,
                "digest": bank_digest(b),
                "dataset": b.dataset,
            }
            for c, b in ctx.banks.items()
        },
        "targets": ctx.targets,
        "drift_layer": ctx.drift_layer,
        "clap": ctx.clap.checkpoint if ctx.clap else None,
    }


def mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
