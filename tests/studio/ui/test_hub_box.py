"""The Concept banks tab's "Load a bank from the Hugging Face Hub" box, in Chromium against the real Gradio server
(test_app.py's), over a Hugging Face cache laid out as huggingface_hub lays it out (offline, as every test runs)."""

import pytest

from bench.workloads import random_bank
from tests.studio.test_hub import OTHER_MODEL, bank_files, lay_out_cache
from tests.studio.ui.test_app import choose, server  # noqa: F401 (server: the studio on the tiny model)


@pytest.fixture
def hub_cache(tiny, tmp_path, monkeypatch):
    """me/scales: a scales bank for the tiny model; me/big: a bank for another model; me/pickled: one with a pickle."""
    random_bank(tiny.signature, concept="scales", classes=["major", "minor"], readout_layer=2).save(tmp_path / "good")
    random_bank(OTHER_MODEL, concept="scales", classes=["major"], probe_points=16).save(tmp_path / "big")
    cache = tmp_path / "hf-cache"
    lay_out_cache(cache, "me/scales", bank_files(tmp_path / "good"))
    lay_out_cache(cache, "me/big", bank_files(tmp_path / "big"))
    lay_out_cache(cache, "me/pickled", bank_files(tmp_path / "good") | {"probe.pkl": b"\x80\x04."})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the server runs in this process and reads it when fetching
    return cache


def test_browser_loads_a_bank_from_the_hub_and_refuses_bad_ones_in_place(server, hub_cache, chromium_options):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_options)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server)
        page.get_by_role("tab", name="Concept banks").click()
        box, status = page.locator("#hub-bank-id textarea, #hub-bank-id input").first, page.locator("#hub-bank-status")
        expect(box).to_have_attribute("placeholder", "hf://owner/repo")
        for spec, words in [
            ("hf://me/big", "was trained for facebook/musicgen-small"),
            ("hf://me/pickled", "a pickle file that could run code"),
            ("hf://me/never-fetched", "is not (completely) in the Hugging Face cache"),
            ("hf://nobody", "names no repo"),
        ]:
            box.fill(spec)
            page.locator("#hub-bank-load").click()
            expect(status).to_contain_text("Cannot load this bank", timeout=30000)
            expect(status).to_contain_text(words)
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no component is marked as failed
        box.fill("me/scales")  # hf:// may be left out
        page.locator("#hub-bank-load").click()
        expect(status).to_contain_text("Loaded scales", timeout=30000)
        expect(status).to_contain_text("from the Hub (hf://me/scales)")
        expect(page.locator("body")).to_contain_text("From: from the Hub (hf://me/scales)")  # the bank's summary
        page.get_by_role("tab", name="Steer").click()
        choose(page, "control-concept-0", "scales")
        expect(page.locator("#control-class-0 input")).to_have_value("major", timeout=10000)
        browser.close()
