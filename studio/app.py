"""The web studio (Gradio). For now a minimal page: prompt -> audio on the resident model, with the model banner."""

from __future__ import annotations

import logging

import gradio as gr

from studio.generate import GenerateError, Sampling, generate_audio
from studio.model import TINY, LoadedModel, ModelLoadError, load_model

log = logging.getLogger(__name__)


def load_with_fallback(name: str, device: str | None = None) -> tuple[LoadedModel, str]:
    """Load `name`; when it cannot be had, the built-in tiny model, with a banner that says so and why."""
    if name == TINY:
        return load_model(TINY, device=device), "Running on the built-in **tiny** model: random weights, its audio is noise."
    try:
        return load_model(name, device=device), ""
    except ModelLoadError as err:
        log.warning("%s; falling back to the tiny model", err)
        return load_model(TINY, device=device), (
            f"**{name} could not be loaded**, so the studio runs on the built-in **tiny** model "
            f"(random weights, its audio is noise). {err}")


def build_app(loaded: LoadedModel, banner: str = "") -> gr.Blocks:
    with gr.Blocks(title="MusicRFM Studio") as app:
        gr.Markdown(f"# MusicRFM Studio\nModel: `{loaded.model_id}` on {loaded.device}")
        gr.Markdown(banner, visible=bool(banner), elem_id="model-banner")
        prompt = gr.Textbox(label="Prompt", value="warm lofi piano")
        with gr.Row():
            seconds = gr.Slider(0.5, loaded.max_seconds, value=min(5.0, loaded.max_seconds), step=0.5, label="Seconds")
            seed = gr.Number(value=0, precision=0, label="Seed")
        button = gr.Button("Generate", variant="primary")
        audio = gr.Audio(label="Result", type="numpy")

        def run(prompt_text, clip_seconds, seed_value):
            try:
                wave = generate_audio(loaded, prompt_text, clip_seconds, int(seed_value), Sampling())
            except GenerateError as err:
                raise gr.Error(str(err))
            return loaded.sample_rate, wave

        button.click(run, [prompt, seconds, seed], audio, api_name="generate", concurrency_limit=1)
    return app


def serve(model: str, device: str | None, host: str, port: int) -> None:
    loaded, banner = load_with_fallback(model, device)
    build_app(loaded, banner).queue(max_size=16).launch(server_name=host, server_port=port)
