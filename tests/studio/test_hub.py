"""studio/hub.py: banks named ``hf://owner/repo[/folder]``, loaded with the real huggingface_hub client from a cache
laid out here as the library lays it out (offline, as every test runs: tests/conftest.py sets HF_HUB_OFFLINE=1 before
huggingface_hub is imported), and the refusals: pickles and extra files, another model's bank, nothing cached, a
malformed id, a cache folder that cannot be written (the online path, in a subprocess that never reaches the network).
"""

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workloads import random_bank
from studio import hub
from studio.banks import check_for_banks, check_model, load_banks, origin
from studio.errors import BankError
from studio.model import ModelSignature
from studio.recipe import Control, LayerSpec, Recipe

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_MODEL = ModelSignature("facebook/musicgen-small", "fedcba9876543210", hidden_size=1024, num_layers=24)


def lay_out_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """A repo's main branch in a Hugging Face cache as huggingface_hub writes it: each file's bytes once under
    models--owner--name/blobs/<sha256>, the snapshot's paths as relative symlinks to them, refs/main naming the
    commit. Returns the snapshot folder."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)  # no newline, as the library writes it
    return snapshot


def bank_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    """A saved bank folder's files, as repo paths under `prefix`."""
    return {prefix + p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache for this test, read by studio/hub.py at call time."""
    folder = tmp_path / "hf-cache"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """A notes bank for the tiny model, and one for another model, saved as the studio saves them."""
    root = tmp_path_factory.mktemp("banks")
    random_bank(tiny.signature, concept="notes", classes=["C", "E", "G"], readout_layer=2).save(root / "notes")
    (root / "notes" / "auc_by_layer.html").write_text("<html></html>")
    random_bank(OTHER_MODEL, concept="notes", classes=["C", "E", "G"], probe_points=16).save(root / "other")
    return root


def steer_notes(bank: str) -> Recipe:
    control = Control("notes", "E", 1.0, layers=LayerSpec(mode="uniform"), gate_p=1.0)
    return Recipe(model="tiny", bank=bank, seconds=0.5, controls=(control,))


def test_the_hub_is_off_in_tests():
    from huggingface_hub import constants

    assert constants.is_offline_mode(), "tests/conftest.py must set HF_HUB_OFFLINE=1 before huggingface_hub loads"


def test_a_bank_at_a_repos_root_or_in_a_subfolder_loads_and_steers_a_recipe(tiny, saved, cache):
    root_snapshot = lay_out_cache(cache, "me/notes", bank_files(saved / "notes") | {"README.md": b"# card\n"})
    lay_out_cache(cache, "me/many", bank_files(saved / "notes", "sub/notes/") | {".gitattributes": b"*.x lfs\n"})
    for spec, folder in [
        ("hf://me/notes", root_snapshot),
        ("hf://me/many/sub/notes", cache / "models--me--many" / "snapshots" / COMMIT / "sub" / "notes"),
        ("hf://me/many/sub", cache / "models--me--many" / "snapshots" / COMMIT / "sub" / "notes"),  # a folder of banks
    ]:
        recipe = steer_notes(spec)
        banks = load_banks(recipe.bank, recipe.model, recipe.concepts())
        assert banks["notes"].classes == ["C", "E", "G"] and banks["notes"].signature == tiny.signature
        check_for_banks(recipe, banks, tiny.signature)
        assert hub.fetch(spec, "notes") == folder
        assert origin(folder) == f"from the Hub (hf://me/{'notes' if folder == root_snapshot else 'many/sub/notes'})"


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"probe.pkl": b"\x80\x04."}, "holds probe.pkl, a pickle file that could run code"),
        ({"old/pytorch_model.bin": b"\x80\x04."}, "holds old/pytorch_model.bin, a pickle file"),
        ({"notes.txt": b"hello"}, "holds notes.txt besides the bank's files"),
        ({"extra/bank.json": b"{}"}, "holds extra/bank.json besides the bank's files"),
    ],
)
def test_a_repo_with_a_pickle_or_an_extra_file_is_refused(saved, cache, extra, words):
    lay_out_cache(cache, "me/notes", bank_files(saved / "notes") | extra)
    with pytest.raises(BankError) as err:
        load_banks("hf://me/notes", "tiny", ["notes"])
    assert str(err.value).startswith("hf://me/notes ") and words in str(err.value) and "\n" not in str(err.value)


def test_a_pickle_beside_a_subfolder_bank_is_refused_and_other_files_there_are_not(saved, cache):
    lay_out_cache(cache, "me/many", bank_files(saved / "notes", "notes/") | {"LICENSE": b"MIT"})
    assert hub.fetch("hf://me/many/notes").name == "notes"  # the bank folder holds nothing else
    lay_out_cache(cache, "me/pickled", bank_files(saved / "notes", "notes/") | {"chords/probe.pt": b"\x80"})
    with pytest.raises(BankError, match=r"^hf://me/pickled/notes holds chords/probe.pt, a pickle file"):
        hub.fetch("hf://me/pickled/notes")


def test_a_repo_without_a_complete_bank_is_refused(saved, cache):
    files = bank_files(saved / "notes")
    lay_out_cache(cache, "me/half", {k: v for k, v in files.items() if k != "bank.safetensors"})
    with pytest.raises(BankError, match=r"^hf://me/half is not a complete bank: bank.json has no bank.safetensors"):
        hub.fetch("hf://me/half")
    lay_out_cache(cache, "me/empty", {"README.md": b"# nothing yet\n"})
    with pytest.raises(BankError, match=r"^hf://me/empty/notes holds no bank: there is no notes/bank.json"):
        hub.fetch("hf://me/empty/notes")


def test_a_bank_for_another_model_is_refused_with_the_model_check(tiny, saved, cache):
    lay_out_cache(cache, "me/big", bank_files(saved / "other"))
    recipe = steer_notes("hf://me/big")
    banks = load_banks(recipe.bank, recipe.model, recipe.concepts())  # a sound bank ...
    with pytest.raises(BankError, match=r"^bank: 'notes' was trained for facebook/musicgen-small .* but the loaded"):
        check_for_banks(recipe, banks, tiny.signature)  # ... for another model
    with pytest.raises(BankError, match="was trained for facebook/musicgen-small"):
        check_model(banks["notes"], tiny.signature)


def test_a_damaged_bank_on_the_hub_is_refused_as_a_local_one_is(saved, cache):
    files = bank_files(saved / "notes")
    files["bank.safetensors"] = files["bank.safetensors"][:-8]
    lay_out_cache(cache, "me/cut", files)
    with pytest.raises(BankError, match=r"damaged \(checksum mismatch"):
        load_banks("hf://me/cut", "tiny", ["notes"])


def test_a_repo_not_in_the_cache_offline_says_to_connect_or_run_once_online(cache):
    with pytest.raises(BankError) as err:
        load_banks("hf://me/never-fetched", "tiny", ["notes"])
    message = str(err.value)
    assert message.startswith("hf://me/never-fetched is not (completely) in the Hugging Face cache")
    assert str(cache) in message and "HF_HUB_OFFLINE is set" in message and "once while online" in message


@pytest.mark.parametrize(
    "spec, words",
    [
        ("hf://", "names no repo"),
        ("hf://me", "names no repo"),
        ("hf://me/", "names no repo"),
        ("hf://me/no pe", "is not a Hub repo id"),
        ("hf://-me/notes", "is not a Hub repo id"),
        ("hf://me/no--tes", "is not a Hub repo id"),
        ("hf://me/notes/../x", "the subfolder part '..' is not a folder name"),
        ("hf://me/notes/a b", "the subfolder part 'a b' is not a folder name"),
    ],
)
def test_a_malformed_id_is_refused_in_one_line(cache, spec, words):
    with pytest.raises(BankError, match=r"^[^\n]*$") as err:
        load_banks(spec, "tiny", ["notes"])
    assert words in str(err.value)
    assert not any(cache.iterdir())  # nothing was looked up or written


def test_origin_reads_the_repo_from_a_cache_path_and_nothing_else(tmp_path):
    snapshot = tmp_path / "hub" / "models--some-one--my.banks" / "snapshots" / COMMIT
    assert hub.hub_id_of(snapshot) == "hf://some-one/my.banks"
    assert hub.hub_id_of(snapshot / "a" / "notes") == "hf://some-one/my.banks/a/notes"
    assert hub.hub_id_of(tmp_path / "models--x--y" / "blobs") is None and hub.hub_id_of(tmp_path) is None
    assert origin(tmp_path) == str(tmp_path.resolve())


def _cli_online(tmp_path, saved_bank: Path, cache: Path) -> subprocess.CompletedProcess:
    """`launch.py generate` on a recipe naming hf://me/notes, online (HF_HUB_OFFLINE=0) against a Hub address where
    nothing listens, so no test reaches the network."""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(steer_notes("hf://me/notes").to_dict()))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
    }
    args = ["launch.py", "generate", "--recipe", str(recipe), "--out", str(tmp_path / "x.wav"), "--precision", "fp32"]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def _error_lines(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


def test_online_a_cache_folder_that_cannot_be_made_is_one_line_and_exit_2(tmp_path, saved):
    (tmp_path / "a-file").write_text("in the way")
    cache = tmp_path / "a-file" / "hf-cache"
    run = _cli_online(tmp_path, saved / "notes", cache)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    (line,) = _error_lines(run)
    assert f"the Hugging Face cache folder {cache} cannot be made" in line and "HF_HUB_CACHE" in line
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions, so a read-only cache is writable")
def test_online_a_read_only_cache_folder_is_one_line_and_exit_2(tmp_path, saved):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        run = _cli_online(tmp_path, saved / "notes", cache)
    finally:
        cache.chmod(0o755)
    assert run.returncode == 2, run.stderr
    (line,) = _error_lines(run)
    assert f"no permission to use the Hugging Face cache folder {cache}" in line and "HF_HUB_CACHE" in line


def test_online_with_the_hub_out_of_reach_the_cached_copy_serves_and_nothing_cached_is_one_line(tmp_path, saved):
    cache = tmp_path / "hf-cache"
    run = _cli_online(tmp_path, saved / "notes", cache)
    assert run.returncode == 2, run.stderr
    (line,) = _error_lines(run)
    assert "hf://me/notes is not (completely) in the Hugging Face cache" in line
    assert "the Hugging Face Hub cannot be reached" in line and "HF_HUB_OFFLINE" not in line
    lay_out_cache(cache, "me/notes", bank_files(saved / "notes"))
    run = _cli_online(tmp_path, saved / "notes", cache)
    assert run.returncode == 0 and (tmp_path / "x.wav").stat().st_size > 1000, run.stderr
    assert "from the Hub (hf://me/notes)" in run.stderr  # the log line naming where the bank came from


def test_the_studio_offers_a_hub_bank_over_its_own_and_refuses_a_foreign_one_unchanged(tiny, saved, cache):
    from studio.ui.session import Studio

    lay_out_cache(cache, "me/notes", bank_files(saved / "notes"))
    lay_out_cache(cache, "me/big", bank_files(saved / "other"))
    studio = Studio(tiny)
    committed = studio.banks["notes"].classes
    with pytest.raises(BankError, match="^the bank hf://me/big 'notes' was trained for facebook/musicgen-small"):
        studio.load_from_hub("hf://me/big")
    assert studio.banks["notes"].classes == committed and studio.origins["notes"].startswith("committed")
    assert studio.load_from_hub("hf://me/notes").classes == ["C", "E", "G"]
    studio.reload_banks()  # as after training another bank: the Hub's stays
    assert (
        studio.banks["notes"].classes == ["C", "E", "G"] and studio.origins["notes"] == "from the Hub (hf://me/notes)"
    )


@pytest.mark.parametrize(
    "status, headers, words",
    [
        (401, {"X-Error-Code": "RepoNotFound"}, "hf://me/x: no repo me/x on the Hugging Face Hub, or it is private"),
        (404, {"X-Error-Code": "RepoNotFound"}, "hf://me/x: no repo me/x on the Hugging Face Hub, or it is private"),
        (403, {"X-Error-Code": "GatedRepo"}, "hf://me/x: the repo me/x is gated"),
        (403, {}, "hf://me/x: the Hub refused access to me/x (HTTP 403)"),
        (503, {}, "hf://me/x: the Hugging Face Hub answered HTTP 503"),
    ],
)
def test_the_hubs_refusals_become_one_line_each(tmp_path, status, headers, words):
    """The Hub's answers as huggingface_hub turns them into its errors (hf_raise_for_status on a real response)."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    request = httpx2.Request("GET", "https://huggingface.co/api/models/me/x")
    with pytest.raises(Exception) as raised:
        hf_raise_for_status(httpx2.Response(status, headers=headers, request=request))
    err = hub._hub_error("hf://me/x", "me/x", tmp_path, raised.value)
    assert isinstance(err, BankError) and str(err).startswith(words) and "\n" not in str(err)


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, "the disk holding the Hugging Face cache ({cache}) is full"),
        (errno.EACCES, "no permission to use the Hugging Face cache folder {cache}"),
        (errno.EROFS, "no permission to use the Hugging Face cache folder {cache}"),
    ],
)
def test_a_full_disk_or_a_forbidden_cache_met_while_fetching_is_one_line(tmp_path, code, words):
    err = hub._hub_error("hf://me/x", "me/x", tmp_path, OSError(code, os.strerror(code)))
    assert isinstance(err, BankError) and words.format(cache=tmp_path) in str(err) and "HF_HUB_CACHE" in str(err)
