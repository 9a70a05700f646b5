"""The studio's page: where each component goes and which handler each event calls (studio/ui/handlers.py).

Steer tab: controls on the left (prompt, clip, seed, concept rows with their targets, schedule editor, layers and
gating), results on the right (Generate / Stop, progress, the readout plot, steered and baseline audio, downloads,
recipe upload). Concept banks tab: the banks (score by layer) and training a new one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.components import Component

from probes.syntheory import CONCEPTS
from studio.errors import StudioError
from studio.model import LoadedModel
from studio.recipe import CFG_MODES, LAYER_MODES
from studio.ui.handlers import Handlers, add_row, continue_this, dice, follow_prompt, readout_for_target, retarget
from studio.ui.schedule_editor import ScheduleEditor
from studio.ui.session import ZERO_GPU, Studio, load_with_fallback
from studio.ui.widgets import (
    DEFAULT_GATE_P,
    DEFAULT_STRENGTH,
    FIELDS,
    LONGEST_SECONDS,
    MAX_ROWS,
    Layering,
    control_name,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "recipes"
QUEUE_SIZE = 16  # waiting requests beyond this are refused instead of piling up on the GPU
MAX_UPLOAD = "32mb"  # an audio prompt: three minutes of 44.1 kHz stereo WAV
# The die is a small square at the foot of the seed row, lifted by the seed box's padding and border (the theme's
# vertical block padding is --spacing-xl) so that it lines up with the box's input.
CSS = """
#model-banner {background: #fff4d6; border: 1px solid #e8c66a; border-radius: 8px; padding: 4px 12px;}
.control-row {align-items: center !important; gap: 8px !important;}
#status {min-height: 1.6em;}
#seed-row {align-items: flex-end !important; gap: 8px !important;}
#dice {flex: none !important; width: 42px !important; min-width: 42px !important; height: 42px !important;
       margin-bottom: calc(var(--spacing-xl) + var(--block-border-width)) !important; padding: 0 !important;
       font-size: 20px !important; line-height: 1 !important;}
"""


@dataclass
class Controls:
    """The Steer tab's left column."""

    form: dict[str, Component]  # every widget that goes into a recipe, keyed by widgets.FIELDS
    row_boxes: list[gr.Row]  # the concept-control rows, MAX_ROWS of them ...
    rows_shown: gr.State  # ... of which this many are shown
    dice: gr.Button
    add: gr.Button
    layer_plot: gr.Plot
    starter_panel: gr.Group  # shown on a model without banks: ...
    starter_button: gr.Button  # ... build the starter banks ...
    starter_status: gr.Markdown  # ... and their progress

    def row_widgets(self, *fields: str) -> list[Component]:
        """The rows' widgets of these widgets.ROW_FIELDS, row by row."""
        return [self.form[f"{field}{i}"] for i in range(MAX_ROWS) for field in fields]


@dataclass
class Results:
    """The Steer tab's right column."""

    run: gr.Button
    stop: gr.Button
    go_on: gr.Button  # "Continue this": the last render becomes the audio prompt
    ab: gr.Checkbox
    outputs: list[Component]  # what a generation fills: status, readout plot, audio, baseline, WAV, JSON, live audio
    upload: gr.File
    recipe_note: gr.Markdown

    @property
    def status(self) -> gr.Markdown:
        return self.outputs[0]

    @property
    def steered(self) -> gr.Audio:
        return self.outputs[2]


@dataclass
class Banks:
    """The Concept banks tab."""

    pick: gr.Dropdown
    shown: list[Component]  # the picked bank's summary and plot
    train_inputs: list[Component]  # concept, instruments, octaves, clip cap
    train: gr.Button
    status: gr.Markdown
    hub_id: gr.Textbox  # a bank on the Hugging Face Hub, hf://owner/repo[/folder] ...
    hub_load: gr.Button  # ... loaded by this button
    hub_status: gr.Markdown


def build_app(loaded: LoadedModel, banner: str = "", engine=None, bank_root: Path | None = None) -> gr.Blocks:
    """The studio's page for `loaded`, with the banks under `bank_root` (default: the model's own folders, see
    studio/banks.py). `engine` is the decode loop (None: the default)."""
    studio = Studio(loaded, engine, bank_root)
    if not studio.banks and os.environ.get("SPACE_ID") and loaded.device.type == "cuda" and not ZERO_GPU:
        studio.start_starter()  # a Space with its own GPU builds the starter banks by itself; visitors' pages follow
    with gr.Blocks(title="MusicRFM Studio") as app:
        gr.Markdown(
            f"# MusicRFM Studio\nSteer **{loaded.model_id}** ({loaded.num_layers} decoder layers, "
            f"{'stereo, ' if loaded.audio_channels == 2 else ''}{'melody, ' if loaded.takes_melody else ''}"
            f"{loaded.device.type}) with RFM concept directions."
        )
        gr.Markdown(banner, visible=bool(banner), elem_id="model-banner")
        with gr.Tab("Steer"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=5, min_width=340):
                    controls = _controls(studio)
                with gr.Column(scale=4, min_width=320):
                    results = _results()
        with gr.Tab("Concept banks"):
            banks = _banks(studio)
        _wire(app, Handlers(studio), controls, results, banks)
    return app


def _controls(studio: Studio) -> Controls:
    loaded, concepts = studio.loaded, studio.concepts
    first = (concepts or [None])[0]
    seconds = min(8.0, loaded.max_seconds)
    form: dict[str, Component] = {}
    # the tiny model knows only its training captions; one that names no pitch leaves the pitch to the steering
    prompt = "a note on a piano" if loaded.is_tiny else "warm lofi piano"
    form["prompt"] = gr.Textbox(label="Prompt", value=prompt, lines=2)
    with gr.Row():
        # past the model's window the clip is made window by window (recipe "extend")
        longest = max(LONGEST_SECONDS, loaded.max_seconds)
        form["seconds"] = gr.Slider(0.5, longest, value=seconds, step=0.5, label="Seconds", elem_id="seconds")
        form["guidance"] = gr.Slider(1.0, 10.0, value=3.0, step=0.5, label="Guidance")
    with gr.Row(elem_id="seed-row"):
        form["seed"] = gr.Number(value=1234, precision=0, label="Seed", minimum=0)
        dice = gr.Button("🎲", size="sm", min_width=0, scale=0, elem_id="dice")
    with gr.Accordion("Continue a clip", open=False):
        form["audio_prompt"] = gr.Audio(
            label="Audio prompt: the clip opens with it, and Seconds counts it in",
            type="filepath",
            sources=["upload"],
            elem_id="audio-prompt",
        )
    with gr.Accordion("Melody", open=True, visible=loaded.takes_melody):
        form["melody"] = gr.Audio(
            label="Melody: a clip whose tune the model follows (its chroma; the first 30 s)",
            type="filepath",
            sources=["upload"],
            elem_id="melody",
        )
    gr.Markdown("### Concept controls")
    # said once for every row: as a field's own info it would wrap down a narrow column and make each row tall
    gr.Markdown(
        "**Hold at** above 0: the probe readout holds the class's probability at that value (its mean over the clip so "
        "far) and **Strength** becomes the ceiling. The readout must read the row's concept.",
        elem_id="target-note",
    )
    classes = studio.classes(first)
    # the tiny model's states need more push than a real MusicGen's: at 2, basic-pitch hears the target note in 22 of
    # 24 clips, at the paper's 0.3 in 3 of 24 (README, "The tiny model")
    strength = 2.0 if loaded.is_tiny else DEFAULT_STRENGTH
    row_boxes = []
    for i in range(MAX_ROWS):
        with gr.Row(visible=i == 0 and bool(first), elem_classes="control-row") as box:
            form[f"on{i}"] = gr.Checkbox(value=i == 0, label="On", scale=1, min_width=60, elem_id=f"control-on-{i}")
            form[f"concept{i}"] = gr.Dropdown(
                concepts, value=first, label="Concept", scale=2, min_width=110, elem_id=f"control-concept-{i}"
            )
            form[f"class{i}"] = gr.Dropdown(
                classes,
                value=classes[i % len(classes)] if classes else None,
                label="Class",
                scale=2,
                min_width=90,
                elem_id=f"control-class-{i}",
            )
            form[f"strength{i}"] = gr.Slider(
                -5.0,
                5.0,
                value=strength,
                step=0.05,
                label="Strength",
                scale=4,
                min_width=150,
                elem_id=f"control-strength-{i}",
            )
            form[f"target{i}"] = gr.Number(
                value=0.0,
                minimum=0.0,
                maximum=1.0,
                step=0.05,
                label="Hold at (0 = off)",
                scale=1,
                min_width=130,
                elem_id=f"control-target-{i}",
            )
        row_boxes.append(box)
    rows_shown = gr.State(1 if first else 0)
    add = gr.Button("+ Add control", size="sm", interactive=bool(first), elem_id="add-control")
    with gr.Group(visible=not concepts, elem_id="starter-panel") as starter_panel:
        gr.Markdown(_starter_invitation(studio) if not concepts else "")
        starter_button = gr.Button(
            "Build the starter banks", variant="primary", visible=not ZERO_GPU, elem_id="build-starter"
        )
        starter_status = gr.Markdown(elem_id="starter-status")
    with gr.Accordion("Schedule over time", open=True):
        names = [control_name(first, form["class0"].value)] if first else []
        form["schedule"] = ScheduleEditor(
            seconds=seconds, controls=names, steps_per_second=loaded.frame_rate, elem_id="schedule"
        )
    with gr.Accordion("Layers and gating", open=False):
        layers = loaded.num_layers
        layering = Layering(k=min(4, layers - 1))
        with gr.Row():
            form["layer_mode"] = gr.Radio(list(LAYER_MODES), value=layering.mode, label="Layer weighting")
            form["cfg_mode"] = gr.Radio(list(CFG_MODES), value="both", label="CFG halves steered")
        with gr.Row():
            form["k"] = gr.Slider(1, max(1, layers - 1), value=layering.k, step=1, label="top-K layers")
            form["kappa"] = gr.Slider(0.05, 1.0, value=layering.kappa, step=0.01, label="kappa (exp)")
            form["w0"] = gr.Slider(0.0, 5.0, value=layering.w0, step=0.05, label="w0 (exp)")
        form["manual"] = gr.Textbox(
            label=f"Manual weights ({layers}, comma-separated)", value=", ".join(["0"] + ["1"] * (layers - 1))
        )
        form["gate_p"] = gr.Slider(
            0.05, 1.0, value=DEFAULT_GATE_P, step=0.05, label="Gate p (chance a step is steered)"
        )
        layer_plot = gr.Plot(label="Layer weights", elem_id="layer-plot")
    form["readout"] = gr.Dropdown(concepts, value=first, label="Probe readout concept")
    return Controls(form, row_boxes, rows_shown, dice, add, layer_plot, starter_panel, starter_button, starter_status)


def _starter_invitation(studio: Studio) -> str:
    """The panel's words: what is missing, what the button does and about how long it takes on this machine."""
    if ZERO_GPU:  # the GPU exists only inside a request: a build of minutes does not fit one
        return (
            f"**No concept banks for {studio.loaded.model_id} yet.** On ZeroGPU they cannot be built here: build them "
            f"on a machine with a GPU (`python -m probes starter --model {studio.loaded.model_id}`), publish them "
            f"(`python -m probes publish`) and load them in the **Concept banks** tab with their `hf://` id."
        )
    where = "GPU" if studio.loaded.device.type == "cuda" else "CPU"
    name = studio.loaded.model_id.rstrip("/").split("/")[-1]
    try:
        estimate = f"about {max(studio.starter_minutes(), 0.1):.1f} minutes on this {where}"
    except StudioError as err:  # fluidsynth or the soundfont missing: the button will say so again, in place
        estimate = f"which cannot be timed here: {err.page_message}"
    return (
        f"**No concept banks for {name} yet:** build the starter banks (notes, chords and tempos), {estimate}. "
        f"The page stays usable meanwhile, and each "
        f"concept joins the controls as its bank lands (saved in `{studio.write_root}`). Or train one bank in the "
        f"**Concept banks** tab, or load one from the Hugging Face Hub there."
    )


def _results() -> Results:
    with gr.Row():
        run = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    ab = gr.Checkbox(value=False, label="A/B: also render the unsteered baseline (same seed)")
    status = gr.Markdown("", elem_id="status")
    plot = gr.Plot(label="Probe readout per timestep", elem_id="readout-plot")
    # plays the clip while it renders (Gradio encodes the chunks into one AAC stream); "Steered" holds the WAV after
    live = gr.Audio(label="Live: plays as it renders", streaming=True, autoplay=True, elem_id="audio-live")
    audio = gr.Audio(label="Steered", type="filepath", elem_id="audio-steered")
    go_on = gr.Button("Continue this", size="sm", elem_id="continue")
    baseline = gr.Audio(label="Baseline (unsteered)", type="filepath", visible=False, elem_id="audio-baseline")
    with gr.Row():
        wav_file = gr.File(label="WAV", interactive=False, visible=False, height=90)
        recipe_file = gr.File(label="Recipe + readout JSON", interactive=False, visible=False, height=90)
    upload = gr.File(label="Load a recipe (.json)", file_types=[".json"], type="filepath", elem_id="recipe-upload")
    recipe_note = gr.Markdown("", elem_id="recipe-status")
    examples = sorted(EXAMPLES_DIR.glob("*.json")) if EXAMPLES_DIR.is_dir() else []
    if examples:
        gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Example recipes")
    outputs = [status, plot, audio, baseline, wav_file, recipe_file, live]
    return Results(run, stop, go_on, ab, outputs, upload, recipe_note)


def _banks(studio: Studio) -> Banks:
    concepts = studio.concepts
    pick = gr.Dropdown(concepts, value=(concepts or [None])[0], label="Bank")
    shown = [gr.Markdown(), gr.Plot(label="Validation AUC by layer")]
    with gr.Accordion("Train a bank", open=False):
        with gr.Row():
            train_inputs = [
                gr.Dropdown(sorted(CONCEPTS), value="notes", label="Concept", elem_id="train-concept"),
                gr.Textbox(value="0 80", label="GM programs (space-separated)", elem_id="train-instruments"),
                gr.Textbox(value="4 5", label="Octaves (notes only)", elem_id="train-octaves"),
                gr.Number(value=0, precision=0, label="Max clips per class (0 = no cap)"),
            ]
        train = gr.Button("Train bank", variant="primary", elem_id="train-bank")
        status = gr.Markdown(elem_id="train-status")
    with gr.Row(equal_height=True):
        hub_id = gr.Textbox(
            label="Load a bank from the Hugging Face Hub",
            placeholder="hf://owner/repo",
            scale=4,
            elem_id="hub-bank-id",
        )
        hub_load = gr.Button("Load from the Hub", scale=1, elem_id="hub-bank-load")
    hub_status = gr.Markdown(elem_id="hub-bank-status")
    return Banks(pick, shown, train_inputs, train, status, hub_id, hub_load, hub_status)


def _wire(app: gr.Blocks, on: Handlers, controls: Controls, results: Results, banks: Banks) -> None:
    """Every event of the page. The page's own widgets answer at once (queue=False); generating, /render and training
    share the one GPU queue."""
    form = controls.form
    inputs = [form[name] for name in FIELDS]
    quiet = dict(show_progress="hidden", queue=False)
    # the clip and the controls keep the schedule editor and the layer plot in step
    row_widgets = controls.row_widgets("on", "concept", "class")
    for widget in [form["seconds"]] + row_widgets:
        widget.change(retarget, inputs, form["schedule"], **quiet)
    # the visitor's own uploads and clears only: Continue and restore set the prompt and its shade at once
    for event in (form["audio_prompt"].upload, form["audio_prompt"].clear):
        event(follow_prompt, inputs, form["schedule"], **quiet)
    for widget in [form[name] for name in ("layer_mode", "k", "kappa", "w0", "manual")] + row_widgets:
        widget.change(on.weights_plot, inputs, controls.layer_plot, **quiet)
    app.load(on.weights_plot, inputs, controls.layer_plot, queue=False)
    for concept, cls in zip(controls.row_widgets("concept"), controls.row_widgets("class")):
        concept.change(on.class_choices, concept, cls, queue=False)
    for target, concept in zip(controls.row_widgets("target"), controls.row_widgets("concept")):
        target.change(readout_for_target, [target, concept, form["readout"]], form["readout"], **quiet)
    controls.dice.click(dice, None, form["seed"], queue=False)
    controls.add.click(
        add_row,
        controls.rows_shown,
        [controls.rows_shown] + controls.row_boxes + controls.row_widgets("on"),
        queue=False,
    )

    # generate, streaming the readout; recipes in; the plain API
    run = dict(inputs=inputs + [results.ab], outputs=results.outputs, concurrency_limit=1, concurrency_id="gpu")
    results.run.click(on.arm, None, None, queue=False).then(on.run_recipe, api_name="generate", **run)
    continued = [form["audio_prompt"], form["seconds"], form["schedule"]]
    results.go_on.click(continue_this, [results.steered] + inputs, continued, queue=False).success(
        on.arm, None, None, queue=False
    ).then(on.run_recipe, api_name=False, **run)
    results.stop.click(on.stop_run, None, None, queue=False)  # the run stops itself and says so
    results.upload.change(
        on.restore,
        results.upload,
        inputs + [controls.rows_shown] + controls.row_boxes + [results.recipe_note],
        queue=False,
    )
    gr.api(on.render, api_name="render", concurrency_limit=1, concurrency_id="gpu")

    # the Concept banks tab
    banks.pick.change(on.show_bank, banks.pick, banks.shown, queue=False)
    app.load(on.show_bank, banks.pick, banks.shown, queue=False)
    offered = [banks.pick, form["readout"]] + controls.row_widgets("concept") + [controls.add]  # where a new bank goes
    banks.train.click(
        on.train_bank,
        banks.train_inputs,
        [banks.status] + offered,
        concurrency_limit=1,
        concurrency_id="gpu",
        api_visibility="private",
    )
    # the starter banks: the button starts the build, and every page follows it (one opened mid-build too); following
    # only waits, so any number of pages may, and the build itself runs in the studio's thread
    starter = dict(
        inputs=controls.rows_shown,
        outputs=[controls.starter_panel, controls.starter_status, controls.starter_button, controls.rows_shown]
        + [controls.row_boxes[0]]
        + offered,
        concurrency_limit=None,
        show_progress="hidden",
        api_visibility="private",
    )
    controls.starter_button.click(on.build_starter, **starter)
    app.load(on.follow_starter, **starter)
    # fetching waits on the network, not the GPU: its own queue, one at a time
    for event in (banks.hub_load.click, banks.hub_id.submit):
        event(
            on.load_hub_bank, banks.hub_id, [banks.hub_status] + offered, concurrency_limit=1, api_visibility="private"
        )


def serve(model: str, device: str | None, host: str, port: int, engine=None, precision: str = "auto") -> None:
    """Load `model` (the tiny one when it cannot be had) and serve the studio on host:port until interrupted."""
    loaded, banner = load_with_fallback(model, device, precision)
    app = build_app(loaded, banner, engine)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1).launch(
        server_name=host, server_port=port, max_file_size=MAX_UPLOAD, css=CSS, show_error=True
    )
