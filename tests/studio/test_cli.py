"""launch.py as a user runs it: real subprocesses, real files, exit codes and messages."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(*args, timeout=300):
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


def test_generate_writes_a_wav_of_the_requested_length_with_identical_bytes(tmp_path):
    outs = [tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "hf.wav"]
    for out, engine in zip(outs, ["fast", "fast", "hf"]):
        run = launch(
            "generate",
            "--model",
            "tiny",
            "--prompt",
            "calm piano",
            "--seconds",
            "2",
            "--seed",
            "0",
            "--out",
            str(out),
            "--engine",
            engine,
        )
        assert run.returncode == 0, run.stderr
    audio, rate = sf.read(outs[0])
    assert rate == 32000 and abs(len(audio) - 2 * 32000) <= 640
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() == outs[2].read_bytes()  # transformers' generate, the reference, agrees on the CPU
    assert "generating" in run.stderr and "103/103" in run.stderr  # the progress bar, on stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seconds", "0"], "seconds"),
        (["--seconds", "-1"], "seconds"),
        (["--seconds", "abc"], "seconds"),
        (["--seconds", "601"], "seconds must be in (0, 600], got 601"),
        (["--model", "nobody/no-such-model"], "nobody/no-such-model"),
        (["--out", "/nonexistent-folder/x.wav"], "does not exist"),
        (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, words):
    out = tmp_path / "out.wav"
    base = {"--model": "tiny", "--seconds": "1", "--out": str(out)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    run = launch("generate", *[x for kv in base.items() for x in kv], timeout=120)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_out_is_refused():
    # /proc refuses new files even to root, unlike a chmod-ed folder
    run = launch("generate", "--model", "tiny", "--seconds", "1", "--out", "/proc/musicrfm-test.wav")
    assert run.returncode == 2 and "not writable" in run.stderr and "Traceback" not in run.stderr


def test_out_that_is_a_directory_is_refused(tmp_path):
    run = launch("generate", "--model", "tiny", "--seconds", "1", "--out", str(tmp_path))
    assert run.returncode == 2 and "is a directory" in run.stderr and list(tmp_path.iterdir()) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_studio_starts_and_serves_with_the_tiny_banner_when_the_hub_is_unreachable():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--port", str(port)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, page = time.time() + 240, None
        while time.time() < deadline and page is None:
            if proc.poll() is not None:
                pytest.fail(f"studio exited: {proc.stdout.read()}")
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None, "studio did not serve within 240 s"
        assert "facebook/musicgen-small could not be loaded" in page and "tiny" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
