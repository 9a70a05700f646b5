"""The studio's session state: the resident model, its concept banks (its folders', and those loaded from the Hub on
the page), the decode engine and the cancel switches of the generations running for the page's visitors; and loading
the model with the tiny model as a fallback."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from probes.bank import ConceptBank
from studio.banks import check_model, find_all, load_all, load_bank, model_banks_roots, origin, user_banks_root
from studio.decode import warm_up
from studio.errors import ModelLoadError, StudioError
from studio.generate import StepEvent, decoder_steps, generate
from studio.hub import fetch
from studio.model import TINY, LoadedModel
from studio.precision import AUTO, load
from studio.recipe import Recipe, parse_recipe

log = logging.getLogger(__name__)

TINY_KNOWS = "trained here on SynTheory renders: notes, chords, intervals, scales and beats on ten instruments"
TINY_BANNER = f"Running on the **tiny** model, {TINY_KNOWS}."


def load_with_fallback(name: str, device: str | None = None, precision: str = AUTO) -> tuple[LoadedModel, str]:
    """Load `name` at `precision` and warm it up, with the page's banner; when it cannot be had, the built-in tiny
    model, with a banner that says so and why. The banner ends with the decoder's precision and why it was chosen."""
    banner = TINY_BANNER if name == TINY else ""
    try:
        loaded = load(name, device=device, precision=precision)
    except ModelLoadError as err:
        log.warning("%s; falling back to the tiny model", err)
        loaded, banner = (
            load(TINY, device=device, precision=AUTO),
            (f"**{name} could not be loaded**, so the studio runs on the **tiny** model ({TINY_KNOWS}). {err}"),
        )
    banner = f"{banner} Decoder precision: **{loaded.precision}** ({loaded.precision_note}).".strip()
    # The first generation on a GPU is several times slower: pay for it here, not on a visitor's. Not on ZeroGPU:
    # there the GPU exists only inside a call, and nothing warmed (CUDA graphs included) outlives the call; each
    # request's decode captures its own graphs inside its call.
    if not ZERO_GPU:
        warm_up(loaded)
    return loaded, banner


try:  # On a Hugging Face ZeroGPU Space, generation must run inside a spaces.GPU call to get the GPU.
    import spaces
    from spaces.config import Config as _SpacesConfig

    ZERO_GPU = bool(_SpacesConfig.zero_gpu)
except ImportError:
    spaces, ZERO_GPU = None, False

# How long a ZeroGPU call is held (Studio.gpu_seconds). Shorter requests are served sooner, and a call that outlasts its
# duration is killed: steps at the rate last measured in this process, with a margin, plus a fixed cost.
GPU_STEPS_PER_SECOND = 50.0  # before a request here is measured: a cautious guess (10 s of audio asks for 26 s)
GPU_FIXED_SECONDS = 10.0  # attaching the GPU, moving the weights, the text encoder, the codec
GPU_MARGIN = 1.5
GPU_MAX_SECONDS = 300


def on_gpu(fn, duration):
    """`fn` run inside a spaces.GPU call held for ``duration(*args, **kwargs)`` seconds (spaces.GPU is a no-op off
    ZeroGPU); `fn` itself where the spaces package is not installed."""
    return fn if spaces is None else spaces.GPU(duration=duration)(fn)


@dataclass
class StarterBuild:
    """The starter banks being built for this studio (probes/starter.py), shared by every visitor's page."""

    progress: object | None = None  # probes.starter.Progress, the latest
    landed: list[str] = field(default_factory=list)  # concepts whose bank is in, in order
    error: str | None = None  # what stopped it, for the page
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Switch:
    """A visitor's stop switch, shared by their runs waiting in the queue or running (`runs` of them)."""

    event: threading.Event = field(default_factory=threading.Event)
    runs: int = 0


class Studio:
    """The resident model, its concept banks and the cancel switches of running generations.

    `engine` is the decode loop the command line chose (None: the default); it is passed to `generate` untouched.
    """

    def __init__(self, loaded: LoadedModel, engine=None, bank_root: Path | None = None):
        self.loaded, self.engine = loaded, engine
        # The model's own folders (built here, then committed), or one folder named by hand for both reading and writing
        self.custom_root = Path(bank_root) if bank_root is not None else None
        self.roots = [self.custom_root] if self.custom_root else model_banks_roots(loaded.model_id)
        self.write_root = self.custom_root or user_banks_root(loaded.model_id)
        self.banks: dict[str, ConceptBank] = {}
        self.hub_folders: dict[str, Path] = {}  # concept -> its bank fetched from the Hub on the page, this session
        self.cancels: dict[str, _Switch] = {}
        self.steps_per_second: float | None = None  # the rate the last generation here ran at
        self.starter: StarterBuild | None = None
        self._starter_lock = threading.Lock()
        self._starter_minutes: float | None = None
        self._starter_rates = None  # probes.starter.StageRates, once the estimate has timed this machine
        self.reload_banks()

    def reload_banks(self) -> None:
        self.banks = load_all(self.roots, self.loaded)
        self.origins = {concept: origin(folder) for concept, folder in find_all(self.roots).items()}
        for concept, folder in self.hub_folders.items():  # asked for by name: they win over the folders' banks
            self.banks[concept], self.origins[concept] = load_bank(folder), origin(folder)

    def load_from_hub(self, spec: str) -> ConceptBank:
        """Fetch the bank `spec` names (``hf://owner/repo[/folder]``, studio/hub.py), check it against the loaded
        model and offer it beside the others; BankError (one line) for anything that stops it, nothing changed."""
        folder = fetch(spec)
        bank = load_bank(folder)
        check_model(bank, self.loaded.signature, where=f"the bank {spec}")
        self.hub_folders[bank.concept] = folder
        self.reload_banks()
        return bank

    def starter_minutes(self) -> float:
        """About how long the starter banks take here: this machine's stages timed on a little work (seconds), then
        projected (probes/starter.py); measured once."""
        if self._starter_minutes is None:
            from probes.starter import DEFAULT_MINUTES, measure_rates, plan_starter

            self._starter_rates = measure_rates(self.loaded)  # the build reuses them
            plans = plan_starter(self._starter_rates, self.loaded.num_layers, DEFAULT_MINUTES)
            self._starter_minutes = sum(plan.total_seconds for plan in plans) / 60
        return self._starter_minutes

    def start_starter(self) -> StarterBuild:
        """Start building the starter banks into the studio's bank folder, in a thread (unless a build is running or
        has succeeded); each bank joins the studio's as it lands. The build holds the model's lock batch by batch, so
        visitors can generate meanwhile."""
        with self._starter_lock:
            if self.starter is None or self.starter.error is not None:
                self.starter = StarterBuild()
                threading.Thread(target=self._build_starter, args=(self.starter,), daemon=True, name="starter").start()
            return self.starter

    def _build_starter(self, build: StarterBuild) -> None:
        from probes.starter import build_starter

        def landed(item) -> None:
            self.reload_banks()
            build.landed.append(item.concept)

        try:
            build_starter(
                self.loaded,
                self.write_root,
                on_progress=lambda progress: setattr(build, "progress", progress),
                on_bank=landed,
                command=f"python -m probes starter --model {self.loaded.model_id}",
                rates=self._starter_rates,
            )
        except StudioError as err:
            build.error = err.page_message
        except Exception as err:  # shown on the page: the studio keeps serving
            log.exception("the starter build failed")
            build.error = f"the build failed unexpectedly ({type(err).__name__}: {err}); see the server's log"
        finally:
            build.done.set()

    @property
    def concepts(self) -> list[str]:
        """The concepts with a bank, notes first (the paper's main concept), then by name."""
        return sorted(self.banks, key=lambda c: (c != "notes", c))

    @property
    def bank_argument(self) -> str | None:
        """The recipe's "bank" field: None for the model's default folder, so that saved recipes stay portable."""
        return None if self.custom_root is None else str(self.custom_root)

    def classes(self, concept: str | None) -> list[str]:
        return self.banks[concept].classes if concept in self.banks else []

    def arm(self, session: str) -> None:
        """Count a run in when Generate is pressed, before it waits in the queue, so that Stop reaches it there too.
        The session's runs, waiting or running, share one switch until it is pulled."""
        switch = self.cancels.get(session)
        if switch is None or switch.event.is_set():
            switch = self.cancels[session] = _Switch()
        switch.runs += 1

    def gpu_seconds(self, recipe: Recipe, session: str, with_baseline: bool, live_audio: bool = False) -> int:
        """The seconds a ZeroGPU call for ``stream`` with these arguments should hold the GPU: its decoder steps
        (twice with the baseline) at the last measured rate, with a margin, plus the fixed cost."""
        steps = decoder_steps(self.loaded, recipe) * (2 if with_baseline else 1)
        rate = self.steps_per_second or GPU_STEPS_PER_SECOND
        return min(GPU_MAX_SECONDS, math.ceil(GPU_FIXED_SECONDS + GPU_MARGIN * steps / rate))

    def stream(self, recipe: Recipe, session: str, with_baseline: bool, live_audio: bool = False):
        """Run the recipe (then its unsteered baseline) in a worker thread; yield ("step", StepEvent) while it runs
        (with the steered clip's audio as it is made when `live_audio`), then ("done", steered Result, baseline Result
        | None). Stop, or leaving the page, cancels it: the worker then raises Cancelled here, so the run itself
        reports that it stopped, after its last progress line."""
        switch = self.cancels.get(session)
        if switch is None:  # not armed: a run from the API
            self.arm(session)
            switch = self.cancels[session]
        cancel = switch.event
        events: queue.Queue = queue.Queue()

        def work():
            try:
                began = time.perf_counter()
                steered = generate(
                    self.loaded,
                    recipe,
                    events.put,
                    banks=self.banks,
                    cancel=cancel,
                    engine=self.engine,
                    stream_audio=live_audio,
                )
                baseline = None
                if with_baseline:
                    plain = parse_recipe({**recipe.to_dict(), "controls": []})
                    baseline = generate(self.loaded, plain, None, banks=self.banks, cancel=cancel, engine=self.engine)
                steps = decoder_steps(self.loaded, recipe) * (2 if with_baseline else 1)
                self.steps_per_second = steps / (time.perf_counter() - began)
                events.put(("done", steered, baseline))
            except Exception as err:  # handed to the page's thread, which shows it
                events.put(("error", err))

        worker = threading.Thread(target=work, daemon=True, name=f"generate-{session}")
        worker.start()
        ended = False  # the worker has finished
        try:
            while True:
                item = events.get()
                if isinstance(item, StepEvent):
                    yield "step", item
                    continue
                ended = True
                if item[0] == "error":
                    raise item[1]
                yield item
                return
        finally:
            if not ended:  # the page went away mid-run: stop the worker (and what this visitor has queued)
                cancel.set()
            switch.runs -= 1
            if switch.runs <= 0 and self.cancels.get(session) is switch:
                del self.cancels[session]

    def stop(self, session: str) -> None:
        switch = self.cancels.get(session)
        if switch is not None:
            switch.event.set()
