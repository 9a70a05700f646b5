"""Command line: `python launch.py [studio|generate] ...`.

Bad input exits with status 2 and one line naming the problem; no traceback, nothing written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

DEFAULT_MODEL = "facebook/musicgen-small"
# `generate --prompt` defaults (a recipe brings its own values).
PROMPT_DEFAULTS = {"model": "tiny", "prompt": "", "seconds": 5.0, "seed": 0, "guidance": 3.0}
ENGINE_HELP = "fast: our decode loop, CUDA graphs on a GPU (default); hf: transformers' generate, the reference"


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; we want one line
        raise UsageError(message)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seconds must be a number, got '{text}'") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    from studio.generate import DEFAULT_ENGINE, ENGINES

    parser = _Parser(prog="launch.py", description="MusicRFM Studio: steer MusicGen with concept directions.")
    sub = parser.add_subparsers(dest="command")

    studio = sub.add_parser("studio", help="run the web studio (the default)")
    studio.add_argument("--model", default=DEFAULT_MODEL,
                        help="hub id, save_pretrained folder or 'tiny'; falls back to tiny when unreachable")
    studio.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    studio.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    studio.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    studio.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))

    gen = sub.add_parser(
        "generate", help="render one clip headless to a WAV file",
        description="Render a prompt (--prompt) or a recipe (--recipe r.json) to --out. With a recipe, --out's .json "
                    "sibling gets the recipe as run and the per-step probe readout; --model/--prompt/--seconds/--seed/"
                    "--guidance then override the recipe's values.")
    gen.add_argument("--recipe", default=None, help="recipe JSON file (see studio/recipe.py)")
    gen.add_argument("--model", default=None, help="hub id, save_pretrained folder or 'tiny' (default: tiny, or the "
                                                   "recipe's model)")
    gen.add_argument("--prompt", default=None, help="text prompt")
    gen.add_argument("--seconds", type=_seconds_arg, default=None, help=f"clip length in seconds (default "
                                                                        f"{PROMPT_DEFAULTS['seconds']:g})")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 3)")
    gen.add_argument("--device", default=None)
    gen.add_argument("--dtype", default=None, help="fp32 | fp16 | bf16")
    gen.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    gen.add_argument("--out", required=True, help="output WAV path")
    return parser


def _check_writable(out: Path) -> None:
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as {out / 'clip.wav'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out {out}: folder {parent} does not exist")
    try:  # a real write, not os.access: root passes access checks on read-only file systems
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise UsageError(f"--out {out}: not writable ({err.strerror})") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"--out {out}: not writable")


def run_generate(args) -> int:
    out = Path(args.out)
    _check_writable(out)
    if args.recipe is not None:
        return _render_recipe(args, out)
    from studio.files import write_wav
    from studio.generate import Sampling, check_seconds, generate_audio, total_steps
    from studio.model import load_model

    opts = {key: default if getattr(args, key) is None else getattr(args, key)
            for key, default in PROMPT_DEFAULTS.items()}
    if opts["seconds"] <= 0:  # before loading the model, which takes time; the limit needs the model
        raise UsageError(f"--seconds must be > 0, got {opts['seconds']:g}")
    loaded = load_model(opts["model"], device=args.device, dtype=args.dtype)
    seconds = check_seconds(loaded, opts["seconds"])
    with tqdm(total=total_steps(loaded, seconds), desc="generating", unit="step", file=sys.stderr) as bar:
        audio = generate_audio(loaded, opts["prompt"], seconds, opts["seed"],
                               Sampling(guidance_scale=opts["guidance"]), on_step=lambda done, total: bar.update(1),
                               engine=args.engine)
    write_wav(out, audio, loaded.sample_rate)
    print(f"wrote {out} ({len(audio) / loaded.sample_rate:.2f} s at {loaded.sample_rate} Hz)")
    return 0


def _render_recipe(args, out: Path) -> int:
    """`generate --recipe`: out.wav plus out.json = {"recipe": as run, "audio": ..., "readout": per step}."""
    from studio.files import write_json, write_wav
    from studio.generate import generate, total_steps
    from studio.model import load_model
    from studio.recipe import load_recipe, with_overrides

    record_path = out.with_suffix(".json")
    if record_path == out:
        raise UsageError(f"--out {out}: give a .wav name; the recipe and readout go to its .json sibling")
    recipe = with_overrides(load_recipe(args.recipe), model=args.model, prompt=args.prompt, seconds=args.seconds,
                            seed=args.seed, guidance_scale=args.guidance)
    loaded = load_model(recipe.model, device=args.device, dtype=args.dtype)
    with tqdm(total=total_steps(loaded, recipe.seconds), desc="generating", unit="step", file=sys.stderr) as bar:
        result = generate(loaded, recipe, on_step=lambda event: bar.update(1), engine=args.engine)
    write_json(record_path, result.record(audio_file=out.name))
    try:
        write_wav(out, result.audio, result.sample_rate)
    except BaseException:
        record_path.unlink(missing_ok=True)
        raise
    print(f"wrote {out} ({len(result.audio) / result.sample_rate:.2f} s at {result.sample_rate} Hz) and {record_path}")
    return 0


def run_studio(args) -> int:
    from studio.app import serve

    serve(model=args.model, device=args.device, host=args.host, port=args.port, engine=args.engine)
    return 0


def main(argv: list[str] | None = None) -> int:
    from studio.generate import Cancelled, GenerateError
    from studio.model import ModelLoadError
    from studio.recipe import RecipeError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["studio", *argv]
    try:
        args = build_parser().parse_args(argv)
        return {"generate": run_generate, "studio": run_studio}[args.command](args)
    except (UsageError, GenerateError, ModelLoadError, RecipeError, Cancelled) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
