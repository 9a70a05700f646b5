"""The web studio: a Gradio page that builds a Recipe from its widgets, runs it on the resident model, and streams the
probe readout while the model generates.

Layout: controls on the left (prompt, clip, concept rows, schedule editor, layers and gating), results on the right
(Generate / Stop, progress, the readout plot, steered and baseline audio, downloads, recipe upload), and a second tab
with the concept banks (AUC by layer, training a new bank).
"""

from __future__ import annotations

import html
import logging
import queue
import random
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from probes.bank import BankError, ConceptBank
from studio.files import write_json, write_wav
from studio.controls import (DEFAULT_STRENGTH, MAX_ROWS, Layering, Row, build_recipe, control_name, layering_from_recipe,
                             list_banks, rows_from_recipe, schedules_from_recipe)
from studio.generate import DEFAULT_ENGINE, Cancelled, GenerateError, StepEvent, generate
from studio.model import TINY, LoadedModel, ModelLoadError, load_model
from studio.plan import layer_weights
from studio.plots import auc_by_layer_figure, layer_weights_figure, readout_figure
from studio.recipe import LAYER_MODES, Recipe, RecipeError, load_recipe, model_banks_root, parse_recipe
from studio.schedule_editor import EditorValue, ScheduleEditor

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES_DIR = ASSETS / "recipes"
MAX_RECIPE_BYTES = 256 * 1024
QUEUE_SIZE = 16          # waiting requests beyond this are refused instead of piling up on the GPU
REDRAW_AUDIO_S = 0.5     # progress and the readout plot are redrawn at least every half second of generated audio
CSS = """
#model-banner {background: #fff4d6; border: 1px solid #e8c66a; border-radius: 8px; padding: 4px 12px;}
.control-row {align-items: center !important; gap: 8px !important;}
#status {min-height: 1.6em;}
"""

try:  # On a Hugging Face ZeroGPU Space, generation must run inside a spaces.GPU call to get the GPU.
    import spaces

    on_gpu = spaces.GPU(duration=120)
except ImportError:  # everywhere else it is a no-op
    def on_gpu(fn):
        return fn


def load_with_fallback(name: str, device: str | None = None) -> tuple[LoadedModel, str]:
    """Load `name`; when it cannot be had, the built-in tiny model, with a banner that says so and why."""
    if name == TINY:
        return load_model(TINY, device=device), ("Running on the built-in **tiny** model: random weights, so its "
                                                 "audio is noise, but every control and plot is real.")
    try:
        return load_model(name, device=device), ""
    except ModelLoadError as err:
        log.warning("%s; falling back to the tiny model", err)
        return load_model(TINY, device=device), (
            f"**{name} could not be loaded**, so the studio runs on the built-in **tiny** model (random weights, its "
            f"audio is noise). {err}")


class Studio:
    """The resident model, its concept banks and the cancel switches of running generations."""

    def __init__(self, loaded: LoadedModel, engine: str = DEFAULT_ENGINE, bank_root: Path | None = None):
        self.loaded, self.engine = loaded, engine
        self.bank_root = Path(bank_root) if bank_root is not None else model_banks_root(loaded.model_id)
        self.banks: dict[str, ConceptBank] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.reload_banks()

    def reload_banks(self) -> None:
        banks = {}
        for concept in list_banks(self.bank_root):
            try:
                banks[concept] = ConceptBank.load(self.bank_root / concept, expect=self.loaded.signature)
            except BankError as err:
                log.warning("skipping bank %s: %s", concept, err)
        self.banks = banks

    @property
    def bank_argument(self) -> str | None:
        """The recipe's "bank" field: None for the model's default folder, so that saved recipes stay portable."""
        return None if self.bank_root == model_banks_root(self.loaded.model_id) else str(self.bank_root)

    def classes(self, concept: str | None) -> list[str]:
        return self.banks[concept].classes if concept in self.banks else []

    # ------------------------------------------------------------------------------------------- widgets -> recipe

    def recipe(self, values: dict) -> Recipe:
        rows = [Row(values[f"on{i}"], values[f"concept{i}"], values[f"class{i}"], values[f"strength{i}"])
                for i in range(MAX_ROWS)]
        layering = Layering(values["layer_mode"], values["k"], values["kappa"], values["w0"], values["manual"])
        return build_recipe(model_id=self.loaded.model_id, prompt=values["prompt"], seconds=values["seconds"],
                            seed=values["seed"], guidance=values["guidance"], cfg_mode=values["cfg_mode"],
                            gate_p=values["gate_p"], layering=layering, rows=rows, schedules=values["schedule"],
                            readout_concept=values["readout"] or None, bank=self.bank_argument)

    # ------------------------------------------------------------------------------------------------ generation

    def stream(self, recipe: Recipe, session: str, with_baseline: bool):
        """Run the recipe (then its unsteered baseline) in a worker thread; yield ("step", StepEvent) while it runs,
        then ("done", steered Result, baseline Result | None). Stopping or leaving the page cancels it."""
        cancel = threading.Event()
        self.cancels[session] = cancel
        events: queue.Queue = queue.Queue()

        def work():
            try:
                steered = generate(self.loaded, recipe, events.put, banks=self.banks, cancel=cancel,
                                   engine=self.engine)
                baseline = None
                if with_baseline:
                    plain = parse_recipe({**recipe.to_dict(), "controls": []})
                    baseline = generate(self.loaded, plain, None, banks=self.banks, cancel=cancel,
                                        engine=self.engine)
                events.put(("done", steered, baseline))
            except Exception as err:  # handed to the page's thread, which shows it
                events.put(("error", err))

        worker = threading.Thread(target=work, daemon=True, name=f"generate-{session}")
        worker.start()
        try:
            while True:
                item = events.get()
                if isinstance(item, StepEvent):
                    yield "step", item
                elif item[0] == "error":
                    raise item[1]
                else:
                    yield item
                    return
        finally:
            cancel.set()  # a no-op when finished; stops the worker when the page went away or Stop was pressed
            self.cancels.pop(session, None)

    def stop(self, session: str) -> None:
        event = self.cancels.get(session)
        if event is not None:
            event.set()


def _readout_plot(studio: Studio, recipe: Recipe, times: list, probs: list) -> object:
    if recipe.readout is None:
        return None
    classes = studio.classes(recipe.readout.concept)
    steered = [c.class_name for c in recipe.active_controls() if c.concept == recipe.readout.concept]
    schedules = {control_name(c.concept, c.class_name): _schedule_points(c, recipe.seconds)
                 for c in recipe.active_controls()}
    return readout_figure(times, probs, classes, steered, recipe.seconds, schedules,
                          title=f"{recipe.readout.concept} probe readout (layer {studio.banks[recipe.readout.concept].readout_layer})")


def _schedule_points(control, seconds: float) -> list[list[float]]:
    steps = max(2, int(seconds * 10) + 1)
    values = control.schedule.values(steps, frame_rate=10)
    return [[i / 10, float(v)] for i, v in enumerate(values)]


def _escape(text: str) -> str:
    """Show user-supplied text literally in a Markdown component (no HTML, no Markdown syntax)."""
    return html.escape(text).replace("*", "&#42;").replace("_", "&#95;").replace("`", "&#96;")


def _save_outputs(result, folder: Path, stem: str) -> tuple[str, str]:
    wav = write_wav(folder / f"{stem}.wav", result.audio, result.sample_rate)
    record = write_json(folder / f"{stem}.json", result.record(wav.name))
    return str(wav), str(record)


def build_app(loaded: LoadedModel, banner: str = "", engine: str = DEFAULT_ENGINE,
              bank_root: Path | None = None) -> gr.Blocks:
    """The studio's page for `loaded`, with the banks under `bank_root` (default assets/banks/<model>)."""
    studio = Studio(loaded, engine, bank_root)
    stream = on_gpu(studio.stream)  # wrapped once, while the app is built, as ZeroGPU expects
    concepts = sorted(studio.banks, key=lambda c: (c != "notes", c))  # notes first: the paper's main concept
    first = concepts[0] if concepts else None
    out_dir = Path(tempfile.mkdtemp(prefix="musicrfm-studio-"))
    seconds_default = min(8.0, loaded.max_seconds)

    with gr.Blocks(title="MusicRFM Studio") as app:
        gr.Markdown(f"# MusicRFM Studio\nSteer **{loaded.model_id}** ({loaded.num_layers} decoder layers, "
                    f"{loaded.device.type}) with RFM concept directions.")
        gr.Markdown(banner, visible=bool(banner), elem_id="model-banner")
        with gr.Tab("Steer"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=5, min_width=340):
                    prompt = gr.Textbox(label="Prompt", value="warm lofi piano", lines=2)
                    with gr.Row():
                        seconds = gr.Slider(0.5, loaded.max_seconds, value=seconds_default, step=0.5,
                                            label="Seconds")
                        guidance = gr.Slider(1.0, 10.0, value=3.0, step=0.5, label="Guidance")
                    with gr.Row(equal_height=True):
                        seed = gr.Number(value=1234, precision=0, label="Seed", minimum=0, scale=3)
                        dice = gr.Button("🎲 Random", scale=1, min_width=90, size="sm", elem_id="dice")
                    gr.Markdown("### Concept controls")
                    rows, row_boxes = [], []
                    for i in range(MAX_ROWS):
                        with gr.Row(visible=i == 0 and bool(first), elem_classes="control-row") as box:
                            on = gr.Checkbox(value=i == 0, label="On", scale=1, min_width=60,
                                             elem_id=f"control-on-{i}")
                            concept = gr.Dropdown(concepts, value=first, label="Concept", scale=2, min_width=110,
                                                  elem_id=f"control-concept-{i}")
                            choices = studio.classes(first)
                            cls = gr.Dropdown(choices, value=choices[i % len(choices)] if choices else None,
                                              label="Class", scale=2, min_width=90, elem_id=f"control-class-{i}")
                            strength = gr.Slider(-5.0, 5.0, value=DEFAULT_STRENGTH, step=0.05, label="Strength",
                                                 scale=4, min_width=150, elem_id=f"control-strength-{i}")
                        rows.append((on, concept, cls, strength))
                        row_boxes.append(box)
                    shown = gr.State(1 if first else 0)
                    add = gr.Button("+ Add control", size="sm", interactive=bool(first), elem_id="add-control")
                    if not concepts:
                        gr.Markdown(f"No concept banks for this model yet: train one in the **Concept banks** tab "
                                    f"(they live in `{studio.bank_root}`).")
                    with gr.Accordion("Schedule over time", open=True):
                        initial_names = [control_name(first, rows[0][2].value)] if first else []
                        editor = ScheduleEditor(seconds=seconds_default, controls=initial_names, elem_id="schedule")
                    with gr.Accordion("Layers and gating", open=False):
                        with gr.Row():
                            layer_mode = gr.Radio(list(LAYER_MODES), value="exp", label="Layer weighting")
                            cfg_mode = gr.Radio(["both", "cond_only"], value="both", label="CFG halves steered")
                        with gr.Row():
                            k = gr.Slider(1, max(1, loaded.num_layers - 1), value=min(4, loaded.num_layers - 1),
                                          step=1, label="top-K layers")
                            kappa = gr.Slider(0.05, 1.0, value=0.95, step=0.01, label="kappa (exp)")
                            w0 = gr.Slider(0.0, 5.0, value=1.0, step=0.05, label="w0 (exp)")
                        manual = gr.Textbox(label=f"Manual weights ({loaded.num_layers}, comma-separated)",
                                            value=", ".join(["0"] + ["1"] * (loaded.num_layers - 1)))
                        gate_p = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="Gate p (chance a step is steered)")
                        layer_plot = gr.Plot(label="Layer weights")
                    readout = gr.Dropdown(concepts, value=first, label="Probe readout concept")
                with gr.Column(scale=4, min_width=320):
                    with gr.Row():
                        run = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    ab = gr.Checkbox(value=False, label="A/B: also render the unsteered baseline (same seed)")
                    status = gr.Markdown("", elem_id="status")
                    plot = gr.Plot(label="Probe readout per timestep", elem_id="readout-plot")
                    audio = gr.Audio(label="Steered", type="filepath", elem_id="audio-steered")
                    baseline_audio = gr.Audio(label="Baseline (unsteered)", type="filepath", visible=False,
                                              elem_id="audio-baseline")
                    with gr.Row():
                        wav_file = gr.File(label="WAV", interactive=False, visible=False, height=90)
                        recipe_file = gr.File(label="Recipe + readout JSON", interactive=False, visible=False,
                                              height=90)
                    upload = gr.File(label="Load a recipe (.json)", file_types=[".json"], type="filepath",
                                     elem_id="recipe-upload")
                    recipe_note = gr.Markdown("", elem_id="recipe-status")
                    examples = sorted(EXAMPLES_DIR.glob("*.json")) if EXAMPLES_DIR.is_dir() else []
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Example recipes")
        with gr.Tab("Concept banks"):
            bank_pick = gr.Dropdown(concepts, value=first, label="Bank")
            bank_info = gr.Markdown()
            bank_plot = gr.Plot(label="Validation AUC by layer")
            with gr.Accordion("Train a bank", open=False):
                from probes.syntheory import CONCEPTS
                with gr.Row():
                    train_concept = gr.Dropdown(sorted(CONCEPTS), value="notes", label="Concept",
                                                elem_id="train-concept")
                    train_instruments = gr.Textbox(value="0 80", label="GM programs (space-separated)",
                                                   elem_id="train-instruments")
                    train_octaves = gr.Textbox(value="4 5", label="Octaves (notes only)", elem_id="train-octaves")
                    train_cap = gr.Number(value=0, precision=0, label="Max clips per class (0 = no cap)")
                train = gr.Button("Train bank", variant="primary", elem_id="train-bank")
                train_status = gr.Markdown(elem_id="train-status")

        widgets = dict(prompt=prompt, seconds=seconds, seed=seed, guidance=guidance, cfg_mode=cfg_mode,
                       gate_p=gate_p, layer_mode=layer_mode, k=k, kappa=kappa, w0=w0, manual=manual,
                       schedule=editor, readout=readout)
        for i, (on, concept, cls, strength) in enumerate(rows):
            widgets.update({f"on{i}": on, f"concept{i}": concept, f"class{i}": cls, f"strength{i}": strength})
        names, components = list(widgets), list(widgets.values())

        def values_of(args) -> dict:
            return dict(zip(names, args))

        # ---- the clip and the controls keep the schedule editor and the layer plot in step
        def active_names(args) -> list[str]:
            v = values_of(args)
            return [control_name(v[f"concept{i}"], v[f"class{i}"]) for i in range(MAX_ROWS)
                    if v[f"on{i}"] and v[f"concept{i}"] and v[f"class{i}"]]

        def retarget(*args):
            v = values_of(args)
            current = v["schedule"] if isinstance(v["schedule"], EditorValue) else EditorValue.constant(v["seconds"], [])
            return current.retarget(v["seconds"], list(dict.fromkeys(active_names(args))))

        def weights_plot(*args):
            v = values_of(args)
            row = next((i for i in range(MAX_ROWS) if v[f"on{i}"] and v[f"concept{i}"] in studio.banks
                        and v[f"class{i}"] in studio.classes(v[f"concept{i}"])), None)
            if row is None:
                return None
            bank = studio.banks[v[f"concept{row}"]]
            auc = bank.val_auc[:, bank.class_index(v[f"class{row}"])]
            try:
                spec = parse_recipe({"version": 1, "seconds": 1, "controls": [
                    {"concept": "x", "class": "x", "strength": 0, "layers": Layering(
                        v["layer_mode"], v["k"], v["kappa"], v["w0"], v["manual"]).to_dict()}]}).controls[0].layers
                weights = layer_weights(spec, auc).tolist()
            except (RecipeError, ValueError, TypeError):
                weights = [0.0] * len(auc)
            return layer_weights_figure(auc.tolist(), weights, f"{control_name(v[f'concept{row}'], v[f'class{row}'])}"
                                                               f": AUC and weight per layer")

        schedule_inputs = [seconds] + [w for row in rows for w in (row[0], row[1], row[2])]
        for widget in schedule_inputs:
            widget.change(retarget, components, editor, show_progress="hidden", queue=False)
        for widget in [layer_mode, k, kappa, w0, manual] + [w for row in rows for w in (row[0], row[1], row[2])]:
            widget.change(weights_plot, components, layer_plot, show_progress="hidden", queue=False)
        app.load(weights_plot, components, layer_plot, queue=False)

        for on, concept, cls, strength in rows:
            concept.change(lambda c: gr.update(choices=studio.classes(c), value=(studio.classes(c) or [None])[0]),
                           concept, cls, queue=False)
        dice.click(lambda: random.randrange(2 ** 31), None, seed, queue=False)

        def add_row(count):
            count = min(MAX_ROWS, count + 1)
            return [count] + [gr.update(visible=i < count) for i in range(MAX_ROWS)] + \
                   [gr.update(value=True) if i == count - 1 else gr.update() for i in range(MAX_ROWS)]

        add.click(add_row, shown, [shown] + row_boxes + [row[0] for row in rows], queue=False)

        # ---- generate, streaming the readout
        def run_recipe(request: gr.Request, *args):
            *widget_values, with_baseline = args
            try:
                recipe = studio.recipe(values_of(widget_values))
            except (RecipeError, GenerateError) as err:
                raise gr.Error(str(err))
            session = request.session_hash if request else "api"
            times, probs, started, drawn_step = [], [], time.perf_counter(), 0
            redraw_steps = max(1, int(loaded.frame_rate * REDRAW_AUDIO_S))
            hidden = gr.update(visible=with_baseline, value=None)
            yield "Starting…", _readout_plot(studio, recipe, [], []), None, hidden, None, None
            try:
                for item in stream(recipe, session, with_baseline):
                    if item[0] == "step":
                        event = item[1]
                        if event.probs is not None:
                            times.append((event.step - 1) / loaded.frame_rate)
                            probs.append(event.probs)
                        if event.step - drawn_step >= redraw_steps or event.step == event.total:
                            drawn_step = event.step
                            note = (" Rendering the unsteered baseline…" if with_baseline and
                                    event.step == event.total else "")
                            yield (f"Generating… step {event.step}/{event.total} "
                                   f"({event.step / loaded.frame_rate:.1f} s of audio).{note}",
                                   _readout_plot(studio, recipe, times, probs) if recipe.readout else gr.update(),
                                   gr.update(), gr.update(), gr.update(), gr.update())
                        continue
                    _, steered, baseline = item
                    folder = Path(tempfile.mkdtemp(dir=out_dir))
                    wav, record = _save_outputs(steered, folder, "steered")
                    base_wav = _save_outputs(baseline, folder, "baseline")[0] if baseline else None
                    if steered.readout is not None:
                        times = [t / loaded.frame_rate for t in range(steered.readout.steps)]
                        probs = steered.readout.window.tolist()
                    took = time.perf_counter() - started
                    yield (f"Done: {recipe.seconds:g} s of audio in {took:.1f} s.",
                           _readout_plot(studio, recipe, times, probs), wav,
                           gr.update(visible=with_baseline, value=base_wav), gr.update(value=wav, visible=True),
                           gr.update(value=record, visible=True))
            except Cancelled:
                yield "Stopped.", gr.update(), None, gr.update(), None, None
            except (RecipeError, GenerateError) as err:
                raise gr.Error(str(err))

        gen_event = run.click(run_recipe, components + [ab],
                              [status, plot, audio, baseline_audio, wav_file, recipe_file],
                              api_name="generate", concurrency_limit=1, concurrency_id="gpu")

        def stop_run(request: gr.Request):
            studio.stop(request.session_hash if request else "api")
            return "Stopped: the generation was cancelled; nothing was rendered."

        stop.click(stop_run, None, status, cancels=[gen_event], queue=False)

        # ---- recipes in and out
        unchanged = [gr.update() for _ in range(len(components) + MAX_ROWS + 1)]

        def restore(path):
            """Every control from a recipe file; a bad file changes nothing and says why under the upload box."""
            if not path:
                return unchanged + [""]
            size = Path(path).stat().st_size
            if size > MAX_RECIPE_BYTES:
                return unchanged + [f"⚠️ Recipe file too large ({size} bytes; at most {MAX_RECIPE_BYTES}): "
                                    f"nothing was changed."]
            try:
                recipe = load_recipe(path)
                for c in recipe.controls:
                    if c.concept not in studio.banks:
                        raise RecipeError(f"controls: concept '{c.concept}' has no bank for {loaded.model_id} "
                                          f"(have: {', '.join(studio.banks) or 'none'})")
                    studio.banks[c.concept].class_index(c.class_name)
                if recipe.seconds > loaded.max_seconds:
                    raise RecipeError(f"seconds must be at most {loaded.max_seconds:g}, got {recipe.seconds:g}")
                rows_now = rows_from_recipe(recipe)
                layering = layering_from_recipe(recipe)
                schedule = schedules_from_recipe(recipe)
            except (RecipeError, BankError, ValueError) as err:
                return unchanged + [f"⚠️ Cannot load this recipe, nothing was changed: {_escape(str(err))}"]
            gate = recipe.controls[0].gate_p if recipe.controls else 0.3
            updates = dict(prompt=recipe.prompt, seconds=recipe.seconds, seed=recipe.seed,
                           guidance=recipe.sampling.guidance_scale, cfg_mode=recipe.cfg_mode, gate_p=gate,
                           layer_mode=layering.mode, k=layering.k, kappa=layering.kappa, w0=layering.w0,
                           manual=layering.manual or gr.update(), schedule=schedule,
                           readout=recipe.readout.concept if recipe.readout else None)
            for i, row in enumerate(rows_now):
                updates.update({f"on{i}": row.enabled, f"concept{i}": row.concept or first,
                                f"class{i}": gr.update(choices=studio.classes(row.concept or first),
                                                       value=row.class_name),
                                f"strength{i}": row.strength})
            count = max(1, len(recipe.controls))
            return ([updates[n] for n in names] + [count] + [gr.update(visible=i < count) for i in range(MAX_ROWS)]
                    + [f"Loaded **{_escape(Path(path).name)}**."])

        upload.change(restore, upload, components + [shown] + row_boxes + [recipe_note], queue=False)

        # ---- the plain API: one recipe JSON in, the WAV and the record out
        def render(recipe_json: str) -> tuple[str, str]:
            """Render a recipe (JSON text, see README) and return the WAV and its JSON record (recipe + readout)."""
            if len(recipe_json) > MAX_RECIPE_BYTES:
                raise gr.Error(f"recipe too large ({len(recipe_json)} characters; at most {MAX_RECIPE_BYTES})")
            try:
                recipe = Recipe.from_json(recipe_json)
                *_, (_, steered, _) = stream(recipe, f"api-{id(recipe)}", False)
            except (RecipeError, GenerateError) as err:
                raise gr.Error(str(err))
            return _save_outputs(steered, Path(tempfile.mkdtemp(dir=out_dir)), "render")

        gr.api(render, api_name="render", concurrency_limit=1, concurrency_id="gpu")

        # ---- concept banks tab
        def show_bank(concept):
            if concept not in studio.banks:
                return "No bank selected.", None
            bank = studio.banks[concept]
            info = (f"**{bank.concept}**: {len(bank.classes)} classes ({', '.join(bank.classes[:12])}"
                    f"{'…' if len(bank.classes) > 12 else ''}), {bank.num_components} eigenvectors per class, "
                    f"probes on {bank.describe_layers()}, readout at layer {bank.readout_layer}; trained on "
                    f"{bank.dataset.get('n_train', '?')} clips.")
            return info, auc_by_layer_figure(bank)

        bank_pick.change(show_bank, bank_pick, [bank_info, bank_plot], queue=False)
        app.load(show_bank, bank_pick, [bank_info, bank_plot], queue=False)

        def train_bank(concept, instruments, octaves, cap, progress=gr.Progress(track_tqdm=True)):
            from probes.syntheory import SynTheoryError
            from probes.train import TrainOptions, train_concept_bank

            def parse(text):
                items = [int(x) if x.lstrip("-").isdigit() else x for x in str(text).split()]
                return items or None
            options = TrainOptions(instruments=parse(instruments),
                                   octaves=parse(octaves) if concept == "notes" else None,
                                   max_per_class=int(cap) if cap else None)
            unchanged = [gr.update() for _ in range(2 + MAX_ROWS + 1)]
            try:
                with loaded.lock:  # its forward passes must not meet another request's steering hooks
                    bank = train_concept_bank(loaded, concept, options)
                bank.save(studio.bank_root / concept)
            except (SynTheoryError, BankError, ValueError) as err:
                return [f"⚠️ Cannot train this bank: {_escape(str(err))}"] + unchanged
            studio.reload_banks()
            choices = sorted(studio.banks, key=lambda c: (c != "notes", c))
            return ([f"Trained **{concept}** on {bank.dataset.get('n_train', '?')} clips: mean validation AUC "
                     f"{float(bank.trained_val_auc.mean()):.3f}, readout at layer {bank.readout_layer}.",
                     gr.update(choices=choices, value=concept), gr.update(choices=choices)]
                    + [gr.update(choices=choices) for _ in range(MAX_ROWS)] + [gr.update(interactive=True)])

        train.click(train_bank, [train_concept, train_instruments, train_octaves, train_cap],
                    [train_status, bank_pick, readout] + [row[1] for row in rows] + [add],
                    concurrency_limit=1, concurrency_id="gpu", api_visibility="private")
    return app


def serve(model: str, device: str | None, host: str, port: int, engine: str = DEFAULT_ENGINE) -> None:
    loaded, banner = load_with_fallback(model, device)
    app = build_app(loaded, banner, engine)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1).launch(
        server_name=host, server_port=port, max_file_size="1mb", css=CSS, show_error=True)
