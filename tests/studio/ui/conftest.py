"""What the page's browser tests share: how to start Debian's headless Chromium under Playwright."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and quiet: this machine's closed network refuses Chromium's background connections.
CHROMIUM_ARGS = "--no-sandbox --disable-gpu --disable-background-networking --disable-component-update --disable-sync"


@pytest.fixture(scope="session")
def chromium_options() -> dict:
    """Keyword arguments for ``playwright.chromium.launch``; skips, saying why, when Chromium is not installed."""
    pytest.importorskip("playwright.sync_api", reason="the playwright pip package is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian's /usr/bin/chromium is not installed (./setup.sh dev installs it)")
    return {"executable_path": str(CHROMIUM), "args": [*CHROMIUM_ARGS.split(), "--no-first-run"]}
