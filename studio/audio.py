"""Audio files: atomic WAV writing, so that a failed or cancelled run never leaves a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write mono float audio as a WAV (16-bit PCM by default, "FLOAT" for lossless caches) via a temporary file in
    the same folder, then rename. PCM samples are clipped to [-1, 1]."""
    path = Path(path)
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if subtype != "FLOAT":
        samples = np.clip(samples, -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, samples, sample_rate, subtype=subtype, format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
