"""`python -m probes publish`: the folder it would upload (--dry-run), its model card, its refusals, and the upload
itself where a network and a token allow it."""

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from bench.workloads import random_bank
from probes.bank import ConceptBank
from probes.publish import model_card
from studio.model import ModelSignature

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SMALL = ModelSignature("facebook/musicgen-small", "0123456789abcdef", hidden_size=16, num_layers=6)
COMMAND = "python -m probes train --model facebook/musicgen-small --concept chords --layers 1-3 --out 'my bank'"


def probes(*args, env=ENV, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "probes", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def error_lines(run) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def chords(tmp_path) -> Path:
    """A chords bank trained on layers 1-3 of 6, with its plots and the command that made it."""
    bank = random_bank(SMALL, concept="chords", classes=["major", "minor", "dim"], readout_layer=2, probe_points=32)
    untrained = [0, 4, 5]
    bank.directions[untrained] = 0
    bank.val_score[untrained] = float("nan")
    bank.eigenvalues = None
    bank.layers, bank.command = (1, 2, 3), COMMAND
    bank.hparams, bank.dataset = {"exponent": 1.0, "reg": 0.001}, {"concept": "chords", "n_train": 90, "n_val": 30}
    bank.save(tmp_path / "chords")
    (tmp_path / "chords" / "auc_by_layer.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "chords" / "auc_by_layer.html").write_text("<html></html>")
    (tmp_path / "chords" / "my notes.txt").write_text("not published")
    return tmp_path / "chords"


def front_matter(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    front, body = card[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_the_command_is_saved_in_bank_json_and_older_banks_read_without_it(chords, tmp_path):
    assert ConceptBank.load(chords).command == COMMAND
    bank = ConceptBank.load(chords)
    bank.command = None
    bank.save(tmp_path / "old")
    assert "command" not in (tmp_path / "old" / "bank.json").read_text()
    assert ConceptBank.load(tmp_path / "old").command is None


def test_dry_run_writes_the_bank_its_plots_and_a_model_card(chords, tmp_path):
    out = tmp_path / "upload"
    run = probes("publish", chords, "--repo", "me/chords", "--dry-run", out)
    assert run.returncode == 0, run.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "auc_by_layer.html", "auc_by_layer.png", "bank.json", "bank.safetensors"]
    assert all(f"  {name}" in run.stdout.splitlines() for name in files)
    assert (out / "bank.safetensors").read_bytes() == (chords / "bank.safetensors").read_bytes()
    meta, body = front_matter((out / "README.md").read_text())
    assert meta["base_model"] == "facebook/musicgen-small" and meta["library_name"] == "musicrfm"
    assert meta["concept"] == "chords" and meta["classes"] == ["major", "minor", "dim"]
    assert meta["layers"] == [1, 2, 3] and meta["readout_layer"] == 2 and meta["val_metric"] == "auc"
    assert {"musicrfm", "musicgen", "steering", "rfm", "concept-bank", "chords"} <= set(meta["tags"])
    bank = ConceptBank.load(out)  # what is uploaded is a sound bank
    for layer in (1, 2, 3):
        scores = bank.val_score[layer]
        row = f"| {layer} | {scores.mean():.3f} | {scores.min():.3f} | {scores.max():.3f} |"
        assert row in body, row
    assert "| 0 |" not in body and "| 4 |" not in body  # untrained layers have no row
    assert (
        COMMAND in body
        and '"bank": "hf://me/chords"' in body
        and "![Validation AUC by layer](auc_by_layer.png)" in body
    )
    assert "n_train: 90" in body and "reg: 0.001" in body  # the SynTheory subset and the RFM settings
    assert meta["method"] == "rfm" and "the top 4 eigenvectors of the AGOP of an RFM probe" in body


def test_dry_run_into_a_subfolder_and_a_bank_without_plots_or_command(tiny, tmp_path):
    bank = random_bank(tiny.signature, concept="notes", classes=["C", "D"], readout_layer=1)
    bank.save(tmp_path / "notes")
    out = tmp_path / "upload"
    run = probes("publish", tmp_path / "notes", "--repo", "me/banks", "--subfolder", "tiny/notes", "--dry-run", out)
    assert run.returncode == 0, run.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "tiny/notes/bank.json", "tiny/notes/bank.safetensors"]
    meta, body = front_matter((out / "README.md").read_text())
    assert "base_model" not in meta and meta["model_signature"]["model_id"] == "tiny"  # not a Hub model id
    assert meta["layers"] == [0, 1, 2, 3] and "not recorded" in body and "![" not in body
    assert '"bank": "hf://me/banks/tiny/notes"' in body


def test_the_card_of_a_bank_made_by_another_method_names_it():
    bank = random_bank(SMALL, classes=["C", "D"], components=1, probe_points=8)
    bank.method = "mean-diff"
    meta, body = front_matter(model_card(bank, "hf://me/notes", has_plot=False))
    assert meta["method"] == "mean-diff" and "AGOP" not in body
    assert "it holds 1 direction(s) found by the `mean-diff` method (one-vs-rest per class;" in " ".join(body.split())


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda f: (f / "bank.safetensors").write_bytes(b"cut"), "is damaged (checksum mismatch"),
        (lambda f: (f / "bank.json").unlink(), "no concept bank at"),
    ],
)
def test_a_damaged_bank_is_refused_and_nothing_is_written(chords, tmp_path, damage, words):
    damage(chords)
    out = tmp_path / "upload"
    run = probes("publish", chords, "--repo", "me/chords", "--dry-run", out)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    (line,) = error_lines(run)
    assert words in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".upload")] == []


@pytest.mark.parametrize(
    "args, words",
    [
        (["--repo", "not a repo"], "--repo 'not a repo' is not a Hub repo id"),
        (["--repo", "me/chords", "--subfolder", "../up"], "the subfolder part '..' is not a folder name"),
        (["--repo", "me/chords"], "uploading needs the network, and HF_HUB_OFFLINE is set"),
    ],
)
def test_bad_arguments_and_an_offline_upload_are_one_line_and_exit_2(chords, tmp_path, args, words):
    run = probes("publish", chords, *args)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    (line,) = error_lines(run)
    assert words in line


def test_dry_run_refuses_a_folder_that_is_not_empty(chords, tmp_path):
    out = tmp_path / "upload"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    run = probes("publish", chords, "--repo", "me/chords", "--dry-run", out)
    assert run.returncode == 2 and "is not an empty folder" in error_lines(run)[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_upload_then_load_back_from_the_hub(chords, tmp_path):
    if not os.environ.get("HF_TOKEN") or not _hub_reachable():
        pytest.skip("uploading needs a network and an HF token")
    from huggingface_hub import HfApi

    api = HfApi()
    repo = f"{api.whoami()['name']}/musicrfm-test-{uuid.uuid4().hex[:8]}"
    env = {**ENV, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "cache")}
    try:
        run = probes("publish", chords, "--repo", repo, "--private", env=env)
        assert run.returncode == 0, run.stderr
        assert sorted(api.list_repo_files(repo)) == [
            ".gitattributes",
            "README.md",
            "auc_by_layer.html",
            "auc_by_layer.png",
            "bank.json",
            "bank.safetensors",
        ]
        code = f"from studio.hub import fetch; print(fetch('hf://{repo}'))"
        fetched = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert ConceptBank.load(Path(fetched.stdout.strip())).command == COMMAND
    finally:
        api.delete_repo(repo, missing_ok=True)
