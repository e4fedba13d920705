"""The report in a real browser: headless Chromium renders it offline, its numbers equal the CSVs.

Chromium (Debian's package, installed by scripts/install-tools) runs with a fresh profile, every
background service off, and a host resolver that resolves nothing, so no request can leave the
machine; its NetLog records every request the page would have made (a page's requests carry the
page's origin as initiator, ``null`` for a file; Chromium's own background requests carry none),
and a control page that does fetch proves the harness sees them. Skipped without Chromium outside
CI (CI=true installs it and must run it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import reportcheck
from tests.test_report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (scripts/install-tools)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def browse(page: Path, work: Path, *extra: str) -> tuple[str, list[str]]:
    """Open ``page`` in a fresh headless Chromium: (stdout, URLs the page itself requested)."""
    assert CHROMIUM, "chromium is not installed: scripts/install-tools installs it (as root)"
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    netlog = profile.with_suffix(".netlog.json")
    command = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--log-net-log={netlog}",
        *extra,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    events = json.loads(netlog.read_text(encoding="utf-8"))
    names = {number: name for name, number in events["constants"]["logEventTypes"].items()}
    requested = [
        event["params"]["url"]
        for event in events["events"]
        if names.get(event["type"]) == "URL_REQUEST_START_JOB"
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"  # Chromium's own, resolved nowhere
    ]
    return done.stdout, requested


def test_the_harness_sees_a_page_that_fetches(tmp_path: Path):
    """Control: an image and a stylesheet from the network show up in the NetLog as the page's requests."""
    page = tmp_path / "fetches.html"
    page.write_text(
        '<html><body><img src="http://example.com/x.png">'
        '<link rel="stylesheet" href="https://fonts.example.org/a.css"></body></html>',
        encoding="utf-8",
    )
    _, requested = browse(page, tmp_path, "--dump-dom")
    assert "http://example.com/x.png" in requested
    assert "https://fonts.example.org/a.css" in requested


def test_report_renders_offline_and_shows_the_csv_numbers(october_store: Any, tmp_path: Path):
    """Chromium's DOM of the report holds every checked number of the CSVs; the page requested nothing."""
    out = tmp_path / "exports"
    report = Path(write_report(october_store, out).location)
    dom, requested = browse(report, tmp_path, "--dump-dom")
    assert requested == []
    checks = reportcheck.parse(dom)
    assert checks.fetching == []
    assert reportcheck.external_urls(dom) == []
    expected = reportcheck.expected_values(
        (out / "chargeback-2026-10.summary.csv").read_bytes(),
        (out / "chargeback-2026-10.focus.csv").read_bytes(),
    )
    assert expected
    for key, value in expected.items():
        assert reportcheck.number(checks.values[key]) == value, key


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 4200, "desktop"), (390, 9000, "phone")])
def test_report_screenshot_is_a_drawn_page(
    october_store: Any, tmp_path: Path, width: int, height: int, name: str
):
    """A screenshot at desktop and phone width is a real page (many colours), not a blank or error page."""
    from PIL import Image

    report = Path(write_report(october_store, tmp_path / "exports").location)
    shot = tmp_path / f"report-{name}.png"
    _, requested = browse(report, tmp_path, f"--window-size={width},{height}", f"--screenshot={shot}")
    assert requested == []
    with Image.open(shot) as image:
        assert image.size == (width, height)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50
    keep = os.environ.get("REPORT_SCREENSHOTS")
    if keep:  # for a person to look at: REPORT_SCREENSHOTS=/some/folder
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
