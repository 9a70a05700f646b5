"""Command line: `python launch.py [studio|generate] ...`.

Every error meant for the user is a StudioError: it exits with its status (2 for bad input) and one line naming the
problem; no traceback, nothing written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from studio.errors import InputError, StudioError

DEFAULT_MODEL = "facebook/musicgen-small"
PROMPT_SECONDS = 5.0  # `generate --prompt` without --seconds (a recipe brings its own)
ENGINES = ("fast", "hf")
ENGINE_HELP = "fast: our decode loop, CUDA graphs on a GPU (default); hf: transformers' generate, the reference"
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
PRECISION_HELP = (
    "the decoder's precision; auto (default): fp16 on a GPU, on the CPU int8 when it is faster and passes a fidelity "
    "check against fp32, else fp32 (studio/precision.py)"
)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as an InputError (one line, exit status 2) instead of usage + message."""

    def error(self, message: str):
        raise InputError(message)


def engine_named(name: str):
    """The engine function for --engine: ours by default, transformers' generate for "hf" (imported only then)."""
    if name == "hf":
        from studio.reference import run_reference

        return run_reference
    from studio.generate import run_decode

    return run_decode


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seconds must be a number, got '{text}'") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="launch.py", description="MusicRFM Studio: steer MusicGen with concept directions.")
    sub = parser.add_subparsers(dest="command")

    studio = sub.add_parser("studio", help="run the web studio (the default)")
    studio.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id, save_pretrained folder or 'tiny'; falls back to tiny when unreachable",
    )
    studio.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    studio.add_argument("--engine", choices=ENGINES, default="fast", help=ENGINE_HELP)
    studio.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    studio.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    studio.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))

    gen = sub.add_parser(
        "generate",
        help="render one clip headless to a WAV file",
        description="Render a prompt (--prompt) or a recipe (--recipe r.json) to --out. With a recipe, --out's .json "
        "sibling gets the recipe as run and the per-step probe readout; --model/--prompt/--continue/--seconds/"
        "--seed/--guidance then override the recipe's values.",
    )
    gen.add_argument("--recipe", default=None, help="recipe JSON file (see studio/recipe.py)")
    gen.add_argument(
        "--model", default=None, help="hub id, save_pretrained folder or 'tiny' (default: tiny, or the recipe's model)"
    )
    gen.add_argument("--prompt", default=None, help="text prompt")
    gen.add_argument(
        "--seconds", type=_seconds_arg, default=None, help=f"clip length in seconds (default {PROMPT_SECONDS:g})"
    )
    gen.add_argument(
        "--continue",
        dest="audio_prompt",
        metavar="AUDIO",
        default=None,
        help="an audio file to continue: it opens the clip, and --seconds counts it in",
    )
    gen.add_argument(
        "--melody", metavar="AUDIO", default=None, help="an audio file whose tune a melody checkpoint follows"
    )
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 3)")
    gen.add_argument("--device", default=None)
    gen.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    gen.add_argument("--engine", choices=ENGINES, default="fast", help=ENGINE_HELP)
    gen.add_argument("--out", required=True, help="output WAV path")
    return parser


def _check_writable(out: Path) -> None:
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name such as {out / 'clip.wav'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out {out}: folder {parent} does not exist")
    try:  # a real write, not os.access: root passes access checks on read-only file systems
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise InputError(f"--out {out}: not writable ({err.strerror})") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"--out {out}: not writable")


def run_generate(args) -> int:
    """Render a prompt or a recipe: out.wav, and with a recipe out.json = {"recipe": as run, "audio", "readout"}."""
    from studio.files import write_json, write_wav
    from studio.generate import generate
    from studio.precision import load
    from studio.recipe import Recipe, load_recipe, with_overrides

    out = Path(args.out)
    _check_writable(out)
    record_path = out.with_suffix(".json") if args.recipe is not None else None
    if record_path == out:
        raise InputError(f"--out {out}: give a .wav name; the recipe and readout go to its .json sibling")
    # Both ways in become one recipe, validated once, before the model is loaded (which takes time).
    base = load_recipe(args.recipe) if args.recipe is not None else Recipe(seconds=PROMPT_SECONDS)
    recipe = with_overrides(
        base,
        model=args.model,
        prompt=args.prompt,
        audio_prompt=args.audio_prompt,
        melody=args.melody,
        seconds=args.seconds,
        seed=args.seed,
        guidance_scale=args.guidance,
    )
    loaded = load(recipe.model, device=args.device, precision=args.precision)
    steps = loaded.steps_for(loaded.frames_for(recipe.seconds))  # checked by generate, window by window
    with tqdm(total=steps, desc="generating", unit="step", file=sys.stderr) as bar:
        # steps count from the clip's start: a continuation's bar starts past its prompt
        result = generate(
            loaded, recipe, on_step=lambda e: bar.update(e.step - bar.n), engine=engine_named(args.engine)
        )
    written = [out]
    if record_path is not None:
        write_json(record_path, result.record(audio_file=out.name))
        written.append(record_path)
    try:
        write_wav(out, result.audio, result.sample_rate)
    except BaseException:
        if record_path is not None:
            record_path.unlink(missing_ok=True)
        raise
    seconds = len(result.audio) / result.sample_rate
    print(f"wrote {out} ({seconds:.2f} s at {result.sample_rate} Hz)" + (f" and {record_path}" if record_path else ""))
    return 0


def run_studio(args) -> int:
    from studio.ui import serve

    serve(
        model=args.model,
        device=args.device,
        host=args.host,
        port=args.port,
        engine=engine_named(args.engine),
        precision=args.precision,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["studio", *argv]
    try:
        args = build_parser().parse_args(argv)
        return {"generate": run_generate, "studio": run_studio}[args.command](args)
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
