"""The demo's HTML report, rendered by a real headless Chromium from a file (no
network): the three charts are drawn with one line per city and one bar per zone."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from services.node.report import ReportData, render_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def report() -> ReportData:
    cities = ["lyon", "paris", "nice"]
    return ReportData(
        title="Cité+ test report",
        summary=[("ingest", "10 in, 10 out, 0 dead letters")],
        load_profile=[
            {"city": c, "hour_utc": h, "avg_kwh": 100 + 50 * (h in (7, 8, 18, 19)) + i * 10}
            for i, c in enumerate(cities)
            for h in range(24)
        ],
        zones=[
            {"city": "lyon", "zone": f"69381{z:04d}", "kwh": 1000.0 - z * 40} for z in range(12)
        ],
        air_quality=[
            {"city": c, "hour": f"2025-01-13T{h:02d}:00:00+00:00", "no2": 20.0 + h + i}
            for i, c in enumerate(cities)
            for h in range(24)
        ],
        tables=[("Dead letters", [{"stage": "ingest", "reason": "bad-checksum", "records": 1}])],
    )


def test_report_draws_its_charts_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make setup` installs it (deploy/dev/system-packages.sh)"
    page = tmp_path / "report.html"
    page.write_text(render_report(report()), encoding="utf-8")
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    assert 'data-charts-drawn="3"' in dom
    assert len(re.findall(r'<path[^>]*class="series"', dom)) == 3 + 3  # profile + air, per city
    assert len(re.findall(r'<rect[^>]*class="bar"', dom)) == 12
    assert "http://" not in page.read_text().replace("http://www.w3.org/2000/svg", "")

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1000,1400",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
