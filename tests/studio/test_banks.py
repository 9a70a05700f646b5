"""studio/banks.py: where a model's banks live (built here, committed), which wins, and saying where each came from."""

from pathlib import Path

import pytest

from bench.workloads import random_bank
from studio import banks, files
from studio.errors import InputError
from studio.model import ModelSignature

TINY = ModelSignature("tiny", "0123456789abcdef", hidden_size=8, num_layers=6)


def test_the_user_folder_is_musicrfm_home_then_a_spaces_data_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICRFM_HOME", str(tmp_path / "home"))
    assert banks.user_home() == tmp_path / "home"
    assert banks.user_banks_root("facebook/musicgen-small") == tmp_path / "home" / "banks" / "musicgen-small"
    monkeypatch.delenv("MUSICRFM_HOME")
    monkeypatch.setattr(files, "SPACE_DATA", tmp_path / "data")
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    assert banks.user_home() == Path.home() / ".cache" / "musicrfm"  # a Space without persistent storage
    (tmp_path / "data").mkdir()
    assert banks.user_home() == tmp_path / "data" / "musicrfm"
    monkeypatch.delenv("SPACE_ID")
    assert banks.user_home() == Path.home() / ".cache" / "musicrfm"  # /data on a machine that is not a Space


def test_a_bank_built_here_wins_over_the_committed_one_and_says_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICRFM_HOME", str(tmp_path))
    monkeypatch.setattr(banks, "BANKS_DIR", tmp_path / "assets")
    random_bank(TINY, concept="notes", classes=["C", "D"]).save(tmp_path / "assets" / "tiny" / "notes")
    random_bank(TINY, concept="chords", classes=["major", "minor"]).save(tmp_path / "assets" / "tiny" / "chords")
    random_bank(TINY, concept="notes", classes=["E", "F"]).save(tmp_path / "banks" / "tiny" / "notes")
    found = banks.find_all(banks.model_banks_roots("tiny"))
    assert found == {"chords": tmp_path / "assets" / "tiny" / "chords", "notes": tmp_path / "banks" / "tiny" / "notes"}
    loaded = banks.load_banks(None, "tiny", ["notes", "chords"])
    assert loaded["notes"].classes == ["E", "F"] and loaded["chords"].classes == ["major", "minor"]
    assert banks.origin(found["notes"]).startswith("built here")
    assert banks.origin(found["chords"]).startswith("committed with the studio")
    with pytest.raises(
        InputError,
        match=r"^bank has no bank for concept 'tempos' for tiny \(looked in .*banks/tiny "
        r"and .*assets/tiny\)",
    ):
        banks.load_banks(None, "tiny", ["tempos"])


def test_the_studio_reads_both_folders_and_saves_what_it_trains_in_the_users(tiny, tmp_path, monkeypatch):
    from studio.ui.session import Studio

    monkeypatch.setenv("MUSICRFM_HOME", str(tmp_path))
    random_bank(tiny.signature, concept="tempos", classes=["value"]).save(tmp_path / "banks" / "tiny" / "tempos")
    studio = Studio(tiny)
    assert studio.write_root == tmp_path / "banks" / "tiny" and studio.bank_argument is None
    assert {"notes", "chords", "tempos"} <= set(studio.banks)  # committed notes and chords, the tempos built here
    assert studio.origins["tempos"].startswith("built here") and studio.origins["notes"].startswith("committed")
