"""Files written atomically: a temporary file in the same folder, renamed into place only when complete, so that a
failed or cancelled run never leaves a half-written WAV, record or cache behind; and the user's folder they go to."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from studio.errors import InputError

SILENCE_RMS = 1e-4  # below this a clip holds nothing to continue or follow
SPACE_DATA = Path("/data")  # a Hugging Face Space's persistent storage, when it has some
ASSETS = Path(__file__).resolve().parent.parent / "assets"  # committed with the studio: models, banks, page assets


def user_home() -> Path:
    """The studio's own folder for what people build (banks) and what it makes once (converted models): $MUSICRFM_HOME,
    else /data/musicrfm on a Space with persistent storage, else ~/.cache/musicrfm."""
    if os.environ.get("MUSICRFM_HOME"):
        return Path(os.environ["MUSICRFM_HOME"]).expanduser()
    if os.environ.get("SPACE_ID") and SPACE_DATA.is_dir() and os.access(SPACE_DATA, os.W_OK):
        return SPACE_DATA / "musicrfm"
    return Path.home() / ".cache" / "musicrfm"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed to `path` when the block succeeds, removed otherwise. The
    block may put a folder there instead of a file (unlink the file, write the folder): it moves into place alike."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write float audio ([samples] mono or [samples, channels]) as a WAV (16-bit PCM by default, "FLOAT" for lossless
    caches). PCM samples are clipped to [-1, 1]."""
    samples = np.asarray(audio, dtype=np.float32)
    if subtype != "FLOAT":
        samples = np.clip(samples, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, samples, sample_rate, subtype=subtype, format="WAV")
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return Path(path)


def read_audio(path: str | Path, sample_rate: int, field: str = "audio", channels: int = 1) -> np.ndarray:
    """A clip as float32 at `sample_rate`, resampled by the exact rational factor: mono [samples], its channels
    averaged; or, for ``channels=2``, [samples, 2], a mono file on both channels and a file of other channel counts
    mixed down to mono first. Refuses a file that is not audio, or is empty or silent, with an InputError naming
    `field`."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise InputError.at(field, f"cannot be read as audio ({Path(path).name}): {err}") from None
    if audio.shape[1] != channels:
        audio = np.repeat(audio.mean(axis=1, keepdims=True), channels, axis=1)
    if rate != sample_rate:
        divisor = np.gcd(rate, sample_rate)
        audio = resample_poly(audio, sample_rate // divisor, rate // divisor, axis=0).astype(np.float32)
    if not len(audio) or float(np.sqrt(np.mean(audio**2))) < SILENCE_RMS:
        raise InputError.at(field, f"is silent or empty ({Path(path).name}): there is nothing to hear in it")
    return audio[:, 0] if channels == 1 else audio
