"""Headless Chromium for the browser tests and the preview benchmark.

Debian's Chromium (``apt-get install chromium``) is driven by Playwright's Python client;
Playwright's own browser download is never used. These flags keep Chromium from reaching out to
the network (this machine has none) and let it run as root without a display.
"""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = "needs Chromium at /usr/bin/chromium: apt-get install chromium"
