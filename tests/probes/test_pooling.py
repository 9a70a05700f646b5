"""Pooling over time: the order-keeping windows pooling, one forward pass for every pooling, and `probes pooling`'s
table and figure (the paper's Table 1, per concept)."""

import contextlib
import csv
import io

import numpy as np
import torch

import probes.activations as activations_module
from probes.__main__ import main
from probes.activations import WINDOWS, delayed_decoder_input, encode_clips, extract_activations
from probes.syntheory import load_concept

NOTES = ["--model", "tiny", "--instruments", "79", "80", "--octaves", "4", "5"]  # 48 clips


def test_windows_are_four_spans_whose_weighted_mean_is_the_mean_pooling(tiny):
    clips = [np.asarray(a, dtype=np.float32) for a in load_concept("notes", instruments=[79], octaves=[4]).audio[:3]]
    pooled = extract_activations(tiny, clips, ("mean", "windows"), progress=False)
    d = tiny.hidden_size
    assert pooled["windows"].shape == (3, tiny.num_layers, WINDOWS * d)
    codes = encode_clips(tiny, torch.from_numpy(np.stack(clips)))
    steps = delayed_decoder_input(codes, tiny.model.config.decoder.pad_token_id).shape[-1]
    lengths = [len(span) for span in torch.arange(steps).tensor_split(WINDOWS)]
    spans = pooled["windows"].reshape(3, tiny.num_layers, WINDOWS, d)
    weighted = sum(spans[:, :, w] * lengths[w] for w in range(WINDOWS)) / steps
    torch.testing.assert_close(weighted, pooled["mean"], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(spans[:, :, 0], spans[:, :, -1])  # the spans differ: order is kept


def test_pooling_compares_every_pooling_from_one_forward_pass(tiny, tmp_path, monkeypatch):
    passes = []
    extract = activations_module.extract_activations
    monkeypatch.setattr(
        activations_module, "extract_activations", lambda *a, **k: passes.append(a[2]) or extract(*a, **k)
    )
    out, cache = tmp_path / "pooling", tmp_path / "acts"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["pooling", *NOTES, "--concepts", "notes", "--out", str(out), "--cache-dir", str(cache)]) == 0
    assert passes == [("mean", "last", "max", "windows", "norm")]  # every pooling in one pass, the norms too
    assert len(list(cache.iterdir())) == 5
    with open(out / "pooling.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["pooling"] for r in rows] == ["mean", "last", "max", "windows"]
    for row in rows:
        assert row["concept"] == "notes" and row["metric"] == "auc" and row["n_train"] == "36"
        assert 0.5 < float(row["best"]) <= 1 and float(row["mean_over_layers"]) <= float(row["best"])
    assert [int(r["width"]) for r in rows] == [128, 128, 128, 512]
    assert (out / "pooling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "pooling.html").stat().st_size
    table = stdout.getvalue()
    assert table.splitlines()[0].split() == ["concept", "mean", "last", "max", "windows"]
    assert "mean AUC" in table and "mean 0.942, last 0.776" in table
    # a bank with one of the poolings trains from the same cache, and a second comparison too: no more passes
    assert (
        main(
            [
                "train",
                *NOTES,
                "--concept",
                "notes",
                "--pooling",
                "last",
                "--cache-dir",
                str(cache),
                "--out",
                str(tmp_path / "bank"),
            ]
        )
        == 0
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["pooling", *NOTES, "--concepts", "notes", "--out", str(out), "--cache-dir", str(cache)]) == 0
    assert len(passes) == 1
