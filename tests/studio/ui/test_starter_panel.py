"""The Steer tab on a model without banks, in Chromium against the real Gradio server: the starter panel's estimate, its
button, the progress, the controls filling in as banks land, and a steered render on them."""

import pytest

from probes import starter
from studio.banks import load_all
from studio.ui import CSS, build_app
from tests.studio.ui.test_app import _free_port


@pytest.fixture
def quick_ladder(monkeypatch):
    """Starter subsets of a few clips each (24 notes, 12 chords, 16 tempo clips), so that a build takes seconds."""
    monkeypatch.setitem(starter.STARTER, "notes", starter.Subset(caps=(2,), instruments=(0, 80), octaves=(4,)))
    monkeypatch.setitem(starter.STARTER, "chords", starter.Subset(caps=(3,), instruments=(0,)))
    monkeypatch.setitem(starter.STARTER, "tempos", starter.Subset(caps=(16,), instruments=None))


@pytest.fixture
def bare_server(tiny, tmp_path, quick_ladder):
    """The studio on the tiny model with an empty bank folder: no concept has a bank."""
    root = tmp_path / "banks"
    port = _free_port()
    app = build_app(tiny, bank_root=root)
    app.queue(max_size=8, default_concurrency_limit=1).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS
    )
    yield f"http://127.0.0.1:{port}/", root
    app.close()


def test_browser_builds_the_starter_banks_and_the_controls_fill_in(tiny, bare_server, chromium_options):
    from playwright.sync_api import expect, sync_playwright

    url, root = bare_server
    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_options)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        panel = page.locator("#starter-panel").first  # a Group carries its id on two nested divs
        expect(panel).to_contain_text("No concept banks for tiny yet")
        expect(panel).to_contain_text("minutes on this CPU")
        expect(page.locator("#control-concept-0")).to_be_hidden()  # nothing to steer yet
        expect(page.locator("#build-starter")).to_have_text("Build the starter banks")
        page.locator("#build-starter").click()
        status = page.locator("#starter-status")
        expect(status).to_contain_text("min left", timeout=60000)  # the bar, with its estimate
        expect(page.locator("#build-starter")).to_be_disabled()
        # the first bank lands while the others build: the first control row appears on it
        expect(page.locator("#control-concept-0 input")).to_have_value("notes", timeout=240000)
        expect(page.locator("#control-class-0 input")).to_have_value("C", timeout=10000)
        expect(page.locator("#add-control")).to_have_text("+ Add control")
        # a steered render on the new notes bank, with its readout, while the other banks may still be building
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=120000)
        expect(page.locator("#readout-plot .js-plotly-plot")).to_be_visible()
        expect(status).to_contain_text("Starter banks built", timeout=240000)
        expect(status).to_contain_text("notes, chords, tempos")
        banks = load_all([root], tiny)
        assert sorted(banks) == ["chords", "notes", "tempos"]
        assert all(bank.command == "python -m probes starter --model tiny" for bank in banks.values())

        # a page opened now has the controls, and no panel
        other = browser.new_page(viewport={"width": 1280, "height": 900})
        other.goto(url)
        expect(other.locator("#control-concept-0 input")).to_have_value("notes", timeout=30000)
        expect(other.locator("#starter-panel").first).to_be_hidden()
        browser.close()


def test_a_build_that_cannot_write_its_folder_says_why_and_the_button_retries(tiny, tmp_path):
    from studio.ui.handlers import Handlers
    from studio.ui.session import Studio

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    studio = Studio(tiny, bank_root=blocker / "banks")
    build = studio.start_starter()
    assert build.done.wait(60) and build.error.startswith(f"cannot create the bank folder {blocker / 'banks'}")
    panel, status, button = list(Handlers(studio).follow_starter(rows_shown=0))[-1][:3]
    assert panel["visible"] is True and status.startswith("⚠️ The starter banks could not be built: cannot create")
    assert button["interactive"] is True  # pressing it again starts a new build
    assert studio.start_starter() is not build
