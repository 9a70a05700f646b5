"""Starter banks: notes, chords and tempos for any MusicGen within minutes, from a SynTheory subset sized to a budget.

    build_starter(loaded, minutes=5)   # or: python -m probes starter --model facebook/musicgen-small

Each concept has a ladder of subsets, smallest first (fewer clips per class of ten instruments of distinct families,
see ``STARTER``). The build measures this machine's speed of each stage on a few real clips (``measure_rates``),
takes the largest rung whose projected time fits the budget, and records that choice beside the banks, so that an
interrupted build resumes on the same clips. Then, per concept: render the clips with fluidsynth in parallel processes
(cached), read the activations in batches on the device (cached), fit the RFM probes of all layers and classes in
one batched fit on the device, and save the bank atomically (probes/bank.py). A bank already there is kept: rerunning
finishes what an interrupted build left. Two builds for one folder take turns (a file lock): the second finds the
banks the first made.

Progress is measured in projected seconds of work, so a bar over it gives an honest estimate of the time left.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from probes.activations import layer_states
from probes.bank import ConceptBank
from probes.figures import auc_by_layer_figure, save_figure
from probes.rfm import DEFAULT_HPARAMS, fit_rfm_layers
from probes.syntheory import CLIP_SECONDS, TEN_FAMILIES, get_concept, list_samples, render
from probes.syntheory.renderer import cache_paths
from probes.train import BANDWIDTH_MULTIPLES, TrainOptions, train_concept_bank
from studio.banks import check_model, user_banks_root
from studio.errors import BankError, InputError
from studio.files import user_home, write_json
from studio.model import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subset:
    """One concept's starter clips: `caps[i]` clips per class (tempos: in all) at rung i, smallest first."""

    caps: tuple[int, ...]
    instruments: tuple | None = TEN_FAMILIES  # None: the concept's default players (tempos: all five click sounds)
    octaves: tuple[int, ...] | None = None  # notes only
    bands: int = 1  # a regression concept's cap is in all: a fixed clips-per-class count counts per band of its range

    def options(self, rung: int, per_class: int | None = None) -> dict:
        """load_concept's subset options at `rung` (the top rung for a rung past the ladder's end), or with a fixed
        number of clips per class."""
        cap = self.caps[min(rung, len(self.caps) - 1)] if per_class is None else per_class * self.bands
        return {
            "instruments": None if self.instruments is None else list(self.instruments),
            "octaves": None if self.octaves is None else list(self.octaves),
            "max_per_class": cap,
        }


# Measured on the tiny model (README, "Starter banks"): the top rungs score within 0.03 of the full recipe.
STARTER: dict[str, Subset] = {
    "notes": Subset(caps=(20, 40), octaves=(2, 3, 4, 5)),  # 40: every clip of ten instruments in four octaves
    "chords": Subset(caps=(30, 60, 120)),
    "tempos": Subset(caps=(200, 400, 800), instruments=None, bands=8),  # 8 bands of 20 BPM
}
DEFAULT_MINUTES = 5.0  # the largest subsets fit it on a GPU, and on a 2-core CPU for the tiny model
_CALIBRATION_CLIPS = 8
_CALIBRATION_N = 128  # training points of the probe fit that is timed


@dataclass(frozen=True)
class StageRates:
    """How fast this machine runs each stage (bench/starter.py prints them)."""

    render_clips_per_s: float  # fluidsynth, with its default parallel processes
    activation_clips_per_s: float  # 4 s clips through the codec and the decoder, batched on the model's device
    probe_fits_per_s: float  # one layer x one configuration x one class, with _CALIBRATION_N training clips

    def probe_seconds(self, n_train: int) -> float:
        """Seconds per probe fit with `n_train` training clips: kernel work grows with the square of the clips."""
        return (max(n_train, _CALIBRATION_N) / _CALIBRATION_N) ** 2 / self.probe_fits_per_s


@dataclass(frozen=True)
class ConceptPlan:
    concept: str
    rung: int
    per_class: int | None  # a fixed clips-per-class count instead of the rung's
    clips: int  # after the cap; silent renders are dropped later
    pending_renders: int
    probe_fits: int  # layers x bandwidths x probes
    seconds: dict  # projected seconds per stage: render, activations, probes

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def measure_rates(loaded: LoadedModel, device: str | None = None) -> StageRates:
    """Time each stage on a little work: one clip per fluidsynth process (into a scratch cache, so that the cache's
    state does not matter), one batch of 4 s clips through the model, one probe fit at the model's width."""
    workers = 2 * (os.cpu_count() or 1)  # render()'s default
    samples = list_samples("notes", instruments=TEN_FAMILIES, octaves=[4])[:workers]
    with tempfile.TemporaryDirectory(prefix="musicrfm-rates-") as scratch:
        render_rate = len(samples) / _seconds(lambda: render(samples, cache_dir=scratch, progress=False))

    silence = torch.zeros(_CALIBRATION_CLIPS, int(CLIP_SECONDS * loaded.sample_rate))
    with loaded.lock:  # a page may be generating
        layer_states(loaded, silence[:1])  # the first call pays for kernels and caches
        activation_rate = _CALIBRATION_CLIPS / min(_seconds(lambda: layer_states(loaded, silence)) for _ in range(2))

    rng = np.random.default_rng(0)
    acts = torch.from_numpy(rng.standard_normal((1, _CALIBRATION_N, loaded.hidden_size), dtype=np.float32))
    labels = np.arange(_CALIBRATION_N) % 2
    # every round, as a fit that keeps improving takes
    fit = dict(k=1, task="multiclass", n_classes=2, device=device, **{**DEFAULT_HPARAMS, "early_stop": False})
    fits_rate = 2 / _seconds(lambda: fit_rfm_layers(acts, labels, acts, labels, **fit))
    return StageRates(render_rate, activation_rate, fits_rate)


def _seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def plan_concept(
    concept: str, rung: int, rates: StageRates, num_layers: int, per_class: int | None = None
) -> ConceptPlan:
    """What building `concept` at `rung` (or with `per_class` clips per class) takes on a machine with `rates`."""
    samples = list_samples(concept, **STARTER[concept].options(rung, per_class))
    pending = sum(not path.is_file() for path in cache_paths(samples))
    spec = get_concept(concept)
    probes = 1 if spec.is_regression else len(spec.classes)
    fits = num_layers * len(BANDWIDTH_MULTIPLES) * probes
    n_train = int(len(samples) * (1 - TrainOptions.val_fraction))
    seconds = {
        "render": pending / rates.render_clips_per_s,
        "activations": len(samples) / rates.activation_clips_per_s,
        "probes": fits * rates.probe_seconds(n_train),
    }
    return ConceptPlan(concept, rung, per_class, len(samples), pending, fits, seconds)


def plan_starter(
    rates: StageRates, num_layers: int, minutes: float, concepts=tuple(STARTER), per_class: int | None = None
) -> list[ConceptPlan]:
    """The largest rung (the same for every concept) whose projected time fits `minutes`, the smallest if none does;
    with `per_class`, that many clips per class instead."""
    if per_class is not None:
        return [plan_concept(c, 0, rates, num_layers, per_class) for c in concepts]
    top = max(len(STARTER[c].caps) for c in concepts) - 1
    for rung in range(top, 0, -1):
        plans = [plan_concept(c, rung, rates, num_layers) for c in concepts]
        if sum(p.total_seconds for p in plans) <= minutes * 60:
            return plans
    return [plan_concept(c, 0, rates, num_layers) for c in concepts]


@dataclass
class Landed:
    """A bank of the build: made now, or kept from before."""

    concept: str
    folder: Path
    bank: ConceptBank
    made: bool


@dataclass
class Progress:
    """The build's state for a progress bar: `done` of `total` projected seconds, and what it is doing."""

    done: float
    total: float
    message: str
    elapsed: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    @property
    def seconds_left(self) -> float:
        """From how fast the projected work has gone so far (the projection alone before anything is done)."""
        if self.done <= 0:
            return max(0.0, self.total - self.elapsed)
        return max(0.0, (self.total - self.done) * self.elapsed / self.done)


def build_starter(
    loaded: LoadedModel,
    root: Path | None = None,
    minutes: float = DEFAULT_MINUTES,
    concepts: tuple[str, ...] = tuple(STARTER),
    per_class: int | None = None,
    device: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_bank: Callable[[Landed], None] | None = None,
    command: str | None = None,
    rates: StageRates | None = None,
) -> list[Landed]:
    """Make (or keep) the starter banks of `loaded` under `root` (default: the user's bank folder for the model), on
    the subset that fits `minutes` on this machine, or on `per_class` clips per class; `on_progress` hears the
    progress, `on_bank` each bank as it lands. `rates`: this machine's, when already measured (else timed here)."""
    unknown = [c for c in concepts if c not in STARTER]
    if unknown:
        raise InputError(f"starter banks are made for {', '.join(STARTER)}; not for {', '.join(unknown)}")
    root = Path(root) if root is not None else user_banks_root(loaded.model_id)
    _make_folder(root)
    with _build_lock(root):
        landed = [_kept(loaded, root, c) for c in concepts]
        todo = [c for c, kept in zip(concepts, landed) if kept is None]
        for kept in filter(None, landed):
            log.info("starter bank %s: kept from an earlier build (%s)", kept.concept, kept.folder)
            if on_bank is not None:
                on_bank(kept)
        if not todo:
            return landed
        plans = _recorded_or_new_plan(loaded, root, minutes, per_class, todo, device, rates)
        total = sum(p.total_seconds for p in plans)
        started = time.perf_counter()
        done = 0.0

        def advance(seconds: float, message: str) -> None:
            nonlocal done
            done += seconds
            if on_progress is not None:
                on_progress(Progress(done, total, message, time.perf_counter() - started))

        for plan in plans:
            unit = {  # projected seconds per unit of each stage's work
                "render": plan.seconds["render"] / max(plan.pending_renders, 1),
                "activations": plan.seconds["activations"] / plan.clips,
                "probes": plan.seconds["probes"] / plan.probe_fits,
            }
            options = TrainOptions(
                **STARTER[plan.concept].options(plan.rung, plan.per_class),
                cache_dir=user_home() / "activations",
                device=device,
                progress=False,
                on_done=lambda stage, n, c=plan.concept, u=unit: advance(n * u[stage], f"{c}: {stage}"),
            )
            before = done
            folder = root / plan.concept
            try:
                bank = train_concept_bank(loaded, plan.concept, options)
                bank.dataset["starter"] = {"rung": plan.rung, "per_class": per_class, "minutes": minutes}
                bank.command = command
                bank.save(folder)
                save_figure(auc_by_layer_figure(bank), folder / "auc_by_layer")
            except OSError as err:  # a full disk or a cache folder it may not write: clips, activations or the bank
                where = f" ({err.filename})" if err.filename else ""
                raise BankError(
                    f"the {plan.concept} starter bank could not be built: {err.strerror or err}{where}; the banks "
                    f"made so far are kept, and rerunning resumes"
                ) from None
            advance(max(0.0, before + plan.total_seconds - done), f"{plan.concept}: saved")  # stages cut short
            made = Landed(plan.concept, folder, bank, made=True)
            landed[concepts.index(plan.concept)] = made
            if on_bank is not None:
                on_bank(made)
        return landed


def _kept(loaded: LoadedModel, root: Path, concept: str) -> Landed | None:
    """The concept's bank already under `root` when it loads and fits the model; a damaged or foreign one is rebuilt."""
    folder = root / concept
    if not folder.exists():
        return None
    try:
        bank = ConceptBank.load(folder)
        check_model(bank, loaded.signature, where=f"the bank at {folder}")
    except BankError as err:
        log.warning("rebuilding the starter bank %s: %s", concept, err)
        return None
    return Landed(concept, folder, bank, made=False)


def _recorded_or_new_plan(
    loaded: LoadedModel,
    root: Path,
    minutes: float,
    per_class: int | None,
    concepts: list[str],
    device: str | None,
    rates: StageRates | None,
) -> list[ConceptPlan]:
    """The rung an earlier build of these banks chose (so that a resumed build reuses its cached clips and
    activations), else one chosen now from measured rates; recorded in `root`/.starter.json."""
    record = root / ".starter.json"
    key = {"signature": asdict(loaded.signature), "minutes": minutes, "per_class": per_class}
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):
        earlier = None
    plans = None
    if isinstance(earlier, dict) and earlier.get("key") == key:
        try:
            rates, rung = StageRates(**earlier["rates"]), int(earlier["rung"])
            plans = [plan_concept(c, rung, rates, loaded.num_layers, per_class) for c in concepts]
        except (KeyError, TypeError, ValueError):  # a damaged record: choose again
            plans = None
    if plans is None:
        rates = rates or measure_rates(loaded, device)
        plans = plan_starter(rates, loaded.num_layers, minutes, tuple(concepts), per_class)
        write_json(record, {"key": key, "rates": asdict(rates), "rung": plans[0].rung})
        projected = sum(p.total_seconds for p in plans) / 60
        if per_class is None and projected > minutes:
            log.warning(
                "even the smallest starter subsets take about %.0f minutes on this machine, more than the %g-minute "
                "budget; building them anyway (a GPU makes it minutes)",
                projected,
                minutes,
            )
    log.info(
        "starter banks for %s: %s; about %.1f minutes (render %.1f clips/s, activations %.1f clips/s, "
        "%.1f probe fits/s)",
        loaded.model_id,
        ", ".join(f"{p.concept} {p.clips} clips" for p in plans),
        sum(p.total_seconds for p in plans) / 60,
        rates.render_clips_per_s,
        rates.activation_clips_per_s,
        rates.probe_fits_per_s,
    )
    return plans


def _make_folder(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BankError(
            f"cannot create the bank folder {root} ({err.strerror}); set MUSICRFM_HOME to a writable folder"
        ) from None
    if not os.access(root, os.W_OK):
        raise BankError(f"the bank folder {root} is not writable; set MUSICRFM_HOME to a writable folder")


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """One build per folder at a time: a second one waits, then keeps what the first made."""
    with open(root / ".starter.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another starter build for %s is running; waiting for it to finish", root)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
