"""Shared test set-up: one thread (two threads on a shared 2-core machine can be 100x slower), each tiny model loaded
once per run."""

import os
import tempfile

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub; a hub id fails fast with our message
# Banks the tests build go to a folder of their own, never into the user's ~/.cache/musicrfm
os.environ["MUSICRFM_HOME"] = tempfile.mkdtemp(prefix="musicrfm-tests-")


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip, with the reason shown, where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU, none here: bench/gpu.sh runs the GPU tests on one")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny():
    """The tiny MusicGen trained here (assets/models/tiny/musicgen) on the CPU. Tests must not modify it."""
    from studio.model import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_random():
    """The random-weight tiny MusicGen, built in code: for tests of mechanics that need no musical model."""
    from studio.model import load_model

    return load_model("tiny-random", device="cpu")
