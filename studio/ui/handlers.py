"""The page's event handlers, top to bottom in the order a visitor meets them: the controls keep the schedule editor and
the layer plot in step, Generate streams the readout, Stop cancels, a recipe upload restores every control, /render is
the plain API, and the Concept banks tab shows banks, trains them and loads them from the Hugging Face Hub.

Handlers that need nothing but their inputs are plain functions. The others are methods of `Handlers`, which holds the
session (`Studio`); bound methods, unlike functools.partial, keep the signatures Gradio reads (gr.Request, gr.Progress
and the /render API's types). Widget values arrive positionally in the order of `widgets.FIELDS`. Nothing here lays out
a component: studio/ui/layout.py does, and wires these handlers to the page.
"""

from __future__ import annotations

import html
import io
import random
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch

from probes.figures import auc_by_layer_figure
from studio.banks import check_for_banks
from studio.errors import Cancelled, StudioError
from studio.files import write_json, write_wav
from studio.hub import SCHEME
from studio.plan import layer_weights, strongest_push
from studio.recipe import Recipe, check_for_model, load_recipe
from studio.ui.plots import layer_weights_figure, readout_figure
from studio.ui.schedule_editor import EditorValue
from studio.ui.session import Studio, on_gpu
from studio.ui.widgets import (
    FIELDS,
    LONGEST_SECONDS,
    MAX_ROWS,
    active_names,
    control_name,
    layering_of,
    prompt_seconds,
    recipe_from_values,
    rows_of,
    values_from_recipe,
)

MAX_RECIPE_BYTES = 256 * 1024
STOPPED = "Stopped: the generation was cancelled; nothing was rendered."
REDRAW_AUDIO_S = 0.5  # progress and the readout plot are redrawn every half second of generated audio ...
MAX_REDRAWS = 60  # ... or less often on long clips: each redraw sends the whole plot, so many would cost O(length^2)


def values_of(args) -> dict:
    """The form's positional values, keyed by widgets.FIELDS."""
    return dict(zip(FIELDS, args))


def wav_bytes(audio, sample_rate: int) -> bytes:
    """A chunk of the live stream: 16-bit WAV, which Gradio's stream encoder reads without a subprocess."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _escape(text: str) -> str:
    """Show user-supplied text literally in a Markdown component (no HTML, no Markdown syntax)."""
    return html.escape(text).replace("*", "&#42;").replace("_", "&#95;").replace("`", "&#96;")


def _unchanged(count: int) -> list:
    return [gr.update() for _ in range(count)]


# ------------------------------------------------------------------------------------ handlers without a session


def retarget(*form) -> EditorValue:
    """The schedule editor follows the clip length and the active controls (their curves kept, new ones constant);
    the shaded prompt it holds stays."""
    return _editor_of(values_of(form))


def follow_prompt(*form) -> EditorValue:
    """The schedule editor shades the audio prompt a visitor uploads or clears. Only the visitor's own changes come
    here: "Continue this" and a restored recipe set the prompt and its shade together, so no handler reads a stale
    Seconds beside a new prompt."""
    values = values_of(form)
    return _editor_of(values, given=prompt_seconds(values["audio_prompt"]))


def _editor_of(values: dict, given: float | None = None) -> EditorValue:
    current = values["schedule"]
    if not isinstance(current, EditorValue):
        current = EditorValue.constant(values["seconds"], [])
    return current.retarget(values["seconds"], active_names(values), given=given)


def add_row(count: int) -> list:
    """Show one more control row, switched on: the new count, each row's visibility, each row's on/off box."""
    count = min(MAX_ROWS, count + 1)
    return (
        [count]
        + [gr.update(visible=i < count) for i in range(MAX_ROWS)]
        + [gr.update(value=True) if i == count - 1 else gr.update() for i in range(MAX_ROWS)]
    )


def readout_for_target(target: float | None, concept: str | None, readout: str | None):
    """A row given a target holds a reading of its concept: an empty readout takes that concept."""
    return concept if target and concept and not readout else gr.update()


CONTINUE_BY_S = 10.0


def continue_this(rendered: str | None, *form) -> tuple[str, float, EditorValue]:
    """ "Continue this": the last render becomes the audio prompt, and the clip grows by its length again, by at most
    CONTINUE_BY_S seconds (the slider's end permitting); the schedule editor follows, the prompt shaded."""
    if not rendered:
        raise gr.Error("Nothing to continue yet: generate a clip first, or upload one under Continue a clip.")
    length = prompt_seconds(rendered)
    seconds = min(length + min(length, CONTINUE_BY_S), LONGEST_SECONDS)
    values = values_of(form) | {"seconds": seconds}
    return rendered, seconds, _editor_of(values, given=length)


def dice() -> int:
    """A new random seed."""
    return random.randrange(2**31)


# --------------------------------------------------------------------------------------- handlers of a session


class Handlers:
    """The handlers that use the session: its model, banks and running generations."""

    def __init__(self, studio: Studio):
        self.studio = studio
        # wrapped once, while the app is built, as ZeroGPU expects; each call held for as long as its request needs
        self.stream = on_gpu(studio.stream, studio.gpu_seconds)
        self.out_dir = Path(tempfile.mkdtemp(prefix="musicrfm-studio-"))

    # ---- the controls

    def class_choices(self, concept: str | None):
        """A row's class dropdown offers the classes of its concept's bank, the first one chosen."""
        choices = self.studio.classes(concept)
        return gr.update(choices=choices, value=(choices or [None])[0])

    def weights_plot(self, *form):
        """Validation AUC per layer of the first steering row's class, with the weight each layer gets."""
        banks = self.studio.banks
        row = next(
            (
                r
                for r in rows_of(values_of(form))
                if r.enabled and r.concept in banks and r.class_name in banks[r.concept].classes
            ),
            None,
        )
        if row is None:
            return None
        bank = banks[row.concept]
        score = bank.val_score[:, bank.class_index(row.class_name)]
        try:
            weights = layer_weights(layering_of(values_of(form)).to_spec(), score)
        except ValueError:  # a field half-edited (InputError) or manual weights of the wrong count: nothing weighted
            weights = torch.zeros(len(score))
        title = f"{row.name}: AUC and weight per layer"
        push = strongest_push(row.strength, weights, bank.residual_norm)
        if push is not None:  # the same strength is a different push on another model: say how hard it is here
            layer, fraction = push
            norm = float(bank.residual_norm[layer])
            share = f"strength {row.strength:g} = {fraction:.0%} of layer {layer}'s residual norm ({norm:.3g})"
            title += f"<br><sup>{share}</sup>"
        return layer_weights_figure(score.tolist(), weights.tolist(), title)

    # ---- generating

    def run_recipe(self, request: gr.Request, *args):
        """Generate what the page describes, streaming progress and the readout plot, then the audio and files:
        yields (status, readout plot, steered audio, baseline audio, WAV file, recipe + readout JSON file, live audio).
        The live player gets the clip's audio as it is made (WAV chunks that Gradio streams on), the others at the
        end."""
        *form, with_baseline = args
        loaded = self.studio.loaded
        try:
            recipe = recipe_from_values(values_of(form), model_id=loaded.model_id, bank=self.studio.bank_argument)
        except StudioError as err:
            raise gr.Error(err.page_message) from None
        session = request.session_hash if request else "api"
        times, probs, outside, started, drawn_step = [], [], [], time.perf_counter(), 0
        running, strengths = [], []  # with closed-loop controls: what the controllers hold and set
        redraw_steps = max(1, int(loaded.frame_rate * max(REDRAW_AUDIO_S, recipe.seconds / MAX_REDRAWS)))
        hidden = gr.update(visible=with_baseline, value=None)
        yield "Starting…", self._readout_plot(recipe, [], []), None, hidden, None, None, None
        try:
            for item in self.stream(recipe, session, with_baseline, live_audio=True):
                if item[0] == "step":
                    event = item[1]
                    if event.probs is not None:
                        times.append((event.step - 1) / loaded.frame_rate)
                        probs.append(event.probs)
                        outside.append(bool(event.outside))
                        running.append(event.running)
                        strengths.append(event.strengths)
                    live = gr.update() if event.audio is None else wav_bytes(event.audio, loaded.sample_rate)
                    if event.step - drawn_step >= redraw_steps or event.step == event.total:
                        drawn_step = event.step
                        last = event.step == event.total
                        note = " Rendering the unsteered baseline…" if with_baseline and last else ""
                        yield (
                            f"Generating… step {event.step}/{event.total} "
                            f"({event.step / loaded.frame_rate:.1f} s of audio).{note}",
                            self._readout_plot(recipe, times, probs, outside, running, strengths)
                            if recipe.readout
                            else gr.update(),
                            *_unchanged(4),
                            live,
                        )
                    elif event.audio is not None:  # between redraws, only the live player's next chunk
                        yield *_unchanged(6), live
                    continue
                _, steered, baseline = item
                folder = self._new_folder()
                wav, record = _save_outputs(steered, folder, "steered")
                base_wav = _save_outputs(baseline, folder, "baseline")[0] if baseline else None
                if steered.readout is not None:
                    times = [t / loaded.frame_rate for t in range(steered.readout.steps)]
                    probs = steered.readout.window.tolist()
                    outside = steered.readout.outside.tolist()
                    running = steered.readout.running.tolist()
                    if steered.strengths is not None:
                        strengths = steered.strengths[: steered.readout.steps].tolist()
                took = time.perf_counter() - started
                yield (
                    f"Done: {recipe.seconds:g} s of audio in {took:.1f} s.",
                    self._readout_plot(recipe, times, probs, outside, running, strengths),
                    wav,
                    gr.update(visible=with_baseline, value=base_wav),
                    gr.update(value=wav, visible=True),
                    gr.update(value=record, visible=True),
                    gr.update(),
                )
        except Cancelled:
            yield STOPPED, gr.update(), None, gr.update(), None, None, gr.update()
        except StudioError as err:
            raise gr.Error(err.page_message) from None

    def arm(self, request: gr.Request) -> None:
        self.studio.arm(request.session_hash)

    def stop_run(self, request: gr.Request) -> None:
        """Pull the session's stop switch. The run, not this handler, writes "Stopped" in the status: one writer, so
        no late progress line can land after it."""
        self.studio.stop(request.session_hash)

    def render(self, recipe_json: str) -> tuple[str, str]:
        """Render a recipe (JSON text, see README) and return the WAV and its JSON record (recipe + readout)."""
        if len(recipe_json) > MAX_RECIPE_BYTES:
            raise gr.Error(f"recipe too large ({len(recipe_json)} characters; at most {MAX_RECIPE_BYTES})")
        try:
            recipe = Recipe.from_json(recipe_json)
            *_, (_, steered, _) = self.stream(recipe, f"api-{id(recipe)}", False)
        except StudioError as err:
            raise gr.Error(err.page_message) from None
        return _save_outputs(steered, self._new_folder(), "render")

    def _new_folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.out_dir))

    def _readout_plot(
        self,
        recipe: Recipe,
        times: list,
        probs: list,
        outside: list | None = None,
        running: list | None = None,
        strengths: list | None = None,
    ):
        """The readout plot; with closed-loop controls, their targets, the running readout they hold and (from
        `strengths`, one row per time of every enabled control's strength) their realised strengths below. Fixed
        strengths get no line: they are their schedules, drawn already."""
        if recipe.readout is None:
            return None
        concept = recipe.readout.concept
        controls = recipe.active_controls()  # in the order of the strengths' columns
        steered = [c.class_name for c in controls if c.concept == concept]
        schedules = {control_name(c.concept, c.class_name): _schedule_points(c, recipe.seconds) for c in controls}
        closed = {control_name(c.concept, c.class_name): (k, c) for k, c in enumerate(controls) if c.target is not None}
        loop = {}
        if closed:
            loop = dict(
                strengths={name: [row[k] for row in strengths or []] for name, (k, _) in closed.items()},
                targets={name: c.target.p for name, (_, c) in closed.items()},
                running=running or [],
                ceiling=max(c.strength for _, c in closed.values()),
            )
        return readout_figure(
            times,
            probs,
            self.studio.classes(concept),
            steered,
            recipe.seconds,
            schedules,
            title=f"{concept} probe readout (layer {self.studio.banks[concept].readout_layer})",
            outside=outside,
            **loop,
        )

    # ---- recipes in

    def restore(self, path: str | None) -> list:
        """Every control from a recipe file; a bad file changes nothing and says why under the upload box. Returns the
        form's values, the number of rows shown, each row's visibility, and the note under the upload box."""
        unchanged = _unchanged(len(FIELDS) + 1 + MAX_ROWS)
        if not path:
            return unchanged + [""]
        size = Path(path).stat().st_size
        if size > MAX_RECIPE_BYTES:
            return unchanged + [
                f"⚠️ Recipe file too large ({size} bytes; at most {MAX_RECIPE_BYTES}): nothing was changed."
            ]
        studio = self.studio
        try:
            recipe = load_recipe(path)
            check_for_model(recipe, studio.loaded)
            check_for_banks(recipe, studio.banks)
            values = values_from_recipe(recipe)
        except StudioError as err:
            return unchanged + [f"⚠️ Cannot load this recipe, nothing was changed: {_escape(err.page_message)}"]
        first = (studio.concepts or [None])[0]
        for i in range(MAX_ROWS):  # empty rows show the first concept, as the page starts
            concept = values[f"concept{i}"] or first
            values[f"concept{i}"] = concept
            values[f"class{i}"] = gr.update(choices=studio.classes(concept), value=values[f"class{i}"])
        values["manual"] = values["manual"] or gr.update()  # no manual weights in the recipe: keep the page's
        values["k"] = values["k"] or gr.update()  # no top-K in the recipe: likewise
        count = max(1, len(recipe.controls))
        return (
            [values[name] for name in FIELDS]
            + [count]
            + [gr.update(visible=i < count) for i in range(MAX_ROWS)]
            + [f"Loaded **{_escape(Path(path).name)}**."]
        )

    # ---- the Concept banks tab

    def show_bank(self, concept: str | None):
        """The bank's summary and its validation score per layer."""
        if concept not in self.studio.banks:
            return "No bank selected.", None
        bank = self.studio.banks[concept]
        directions = f"{bank.num_components} {bank.method} direction{'' if bank.num_components == 1 else 's'}"
        info = (
            f"**{bank.concept}**: {len(bank.classes)} classes ({', '.join(bank.classes[:12])}"
            f"{'…' if len(bank.classes) > 12 else ''}), {directions} per class, "
            f"probes on {bank.describe_layers()}, readout at layer {bank.readout_layer}; trained on "
            f"{bank.dataset.get('n_train', '?')} clips. From: {_escape(self.studio.origins.get(concept, '?'))}."
        )
        return info, auc_by_layer_figure(bank)

    def train_bank(
        self, concept: str, instruments: str, octaves: str, cap: float, progress=gr.Progress(track_tqdm=True)
    ) -> list:
        """Train a bank for the loaded model and offer it everywhere a concept is chosen: returns the status, the bank
        picker, the readout concept, each row's concept and the "+ Add control" button."""
        from probes.train import TrainOptions, train_concept_bank  # heavy, and most sessions never train

        studio = self.studio
        options = TrainOptions(
            instruments=_words(instruments),
            octaves=_words(octaves) if concept == "notes" else None,
            max_per_class=int(cap) if cap else None,
        )
        try:
            bank = train_concept_bank(studio.loaded, concept, options)  # holds the model's lock batch by batch
            bank.save(studio.write_root / concept)
        except StudioError as err:
            return [f"⚠️ Cannot train this bank: {_escape(err.page_message)}"] + _unchanged(2 + MAX_ROWS + 1)
        studio.hub_folders.pop(concept, None)  # the bank just trained replaces one loaded from the Hub
        studio.reload_banks()
        return [
            f"Trained **{concept}** on {bank.dataset.get('n_train', '?')} clips: mean validation AUC "
            f"{float(bank.trained_val_score.mean()):.3f}, readout at layer {bank.readout_layer}; saved in "
            f"`{_escape(str(studio.write_root / concept))}`."
        ] + self._offer(concept)

    def load_hub_bank(self, spec: str) -> list:
        """Fetch a bank from the Hugging Face Hub (``hf://owner/repo[/folder]``; ``owner/repo`` alone is taken as one)
        and offer it as a trained one is: returns what `train_bank` returns. A failure says why and changes nothing."""
        spec = (spec or "").strip()
        if spec and not spec.startswith(SCHEME):
            spec = SCHEME + spec
        try:
            bank = self.studio.load_from_hub(spec)
        except StudioError as err:
            return [f"⚠️ Cannot load this bank: {_escape(err.page_message)}"] + _unchanged(2 + MAX_ROWS + 1)
        return [
            f"Loaded **{bank.concept}** ({len(bank.classes)} classes, probes on {bank.describe_layers()}) "
            f"{_escape(self.studio.origins[bank.concept])}."
        ] + self._offer(bank.concept)

    # ---- the starter banks, for a model that has none (studio/ui/layout.py's panel on the Steer tab)

    def build_starter(self, rows_shown: int):
        """Start the starter build (or join the one running) and follow it; see `follow_starter`."""
        self.studio.start_starter()
        yield from self.follow_starter(rows_shown)

    def follow_starter(self, rows_shown: int):
        """While a starter build runs, every half second: its progress, and each bank offered as it lands, the first one
        filling in the first control row. Yields the panel (hidden on a page opened after a successful build), its
        status and button, the shown-row count, the first row's box and what `_offer` returns; no change when no build
        was started (a page opened on a model with banks)."""
        build = self.studio.starter
        if build is None:
            yield _unchanged(5 + 2 + MAX_ROWS + 1)  # a generator that yields nothing would blank its outputs
            return
        late = build.done.is_set() and build.error is None
        offered: list[str] = []
        while True:
            finished = build.done.wait(0.5)
            new = [concept for concept in build.landed if concept not in offered]
            offered += new
            fill = bool(new) and rows_shown == 0  # the first bank of a page that had none: show a control on it
            first = self.studio.concepts[0] if self.studio.concepts else None
            if fill:
                rows_shown = 1
            row = [rows_shown, gr.update(visible=True) if fill else gr.update()]
            chosen = self._offer(first, fill) if new else _unchanged(2 + MAX_ROWS + 1)
            panel = [gr.update(visible=not late), _starter_status(build)]
            yield panel + [gr.update(interactive=finished and build.error is not None)] + row + chosen
            if finished:
                return

    def _offer(self, concept: str, fill: bool = False) -> list:
        """A new bank everywhere a concept is chosen: the bank picker (showing it), the readout concept, each row's
        concept and the "+ Add control" button; with `fill`, the readout and the first row choose it too."""
        choices = self.studio.concepts
        chosen = {"value": concept} if fill else {}
        return (
            [gr.update(choices=choices, value=concept), gr.update(choices=choices, **chosen)]
            + [gr.update(choices=choices, **(chosen if i == 0 else {})) for i in range(MAX_ROWS)]
            + [gr.update(interactive=True)]
        )


def _starter_status(build) -> str:
    """The starter build's progress as a bar with the time left, then what has landed, or what stopped it."""
    if build.error is not None:
        return f"⚠️ The starter banks could not be built: {_escape(build.error)}"
    landed = f" Ready: **{', '.join(build.landed)}**." if build.landed else ""
    if build.done.is_set():
        return f"Starter banks built.{landed} Choose a concept in the controls below."
    progress = build.progress
    if progress is None:
        return "Timing this machine's stages to choose the clips…"
    filled = round(progress.fraction * 20)
    bar = "█" * filled + "░" * (20 - filled)
    return (
        f"`{bar}` {progress.fraction:.0%} · {_escape(progress.message)} · about "
        f"{max(progress.seconds_left / 60, 0.1):.1f} min left.{landed}"
    )


def _words(text: str) -> list | None:
    """Space-separated GM programs (numbers) or names; None when empty (every instrument, every octave)."""
    items = [int(x) if x.lstrip("-").isdigit() else x for x in str(text).split()]
    return items or None


def _schedule_points(control, seconds: float) -> list[list[float]]:
    """A control's schedule sampled every 0.1 s, for drawing behind the readout."""
    steps = max(2, int(seconds * 10) + 1)
    values = control.schedule.values(steps, frame_rate=10)
    return [[i / 10, float(v)] for i, v in enumerate(values)]


def _save_outputs(result, folder: Path, stem: str) -> tuple[str, str]:
    wav = write_wav(folder / f"{stem}.wav", result.audio, result.sample_rate)
    record = write_json(folder / f"{stem}.json", result.record(wav.name))
    return str(wav), str(record)
