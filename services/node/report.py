"""The demo's HTML report: one self-contained page (no network) whose charts are
drawn in the browser from the figures embedded in it.

Charts: daily load profile per city, consumption per zone, air quality over
time. The page is plain HTML + SVG built by a small script, so it opens from
the file system anywhere, and a headless browser test can check it draws.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ReportData:
    title: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    load_profile: list[dict[str, Any]] = field(default_factory=list)  # city, hour_utc, avg_kwh
    zones: list[dict[str, Any]] = field(default_factory=list)  # city, zone, kwh
    air_quality: list[dict[str, Any]] = field(default_factory=list)  # city, hour (ISO), no2
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)


ASSETS = Path(__file__).with_name("assets")


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(data: ReportData) -> str:
    payload = {
        "load_profile": data.load_profile,
        "zones": data.zones,
        "air_quality": data.air_quality,
    }
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in data.summary
    )
    tables = "".join(f"<h2>{html.escape(title)}</h2>{_table(rows)}" for title, rows in data.tables)
    embedded = json.dumps(payload, default=str).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{html.escape(data.title)}</title>
<style>{(ASSETS / "report.css").read_text(encoding="utf-8")}</style></head>
<body>
<h1>{html.escape(data.title)}</h1>
<table>{summary}</table>
<h2>Daily load profile per city</h2><div id="profile"></div>
<h2>Consumption per zone (largest first)</h2><div id="zones"></div>
<h2>Air quality over time (NO2)</h2><div id="air"></div>
{tables}
<script type="application/json" id="data">{embedded}</script>
<script>{(ASSETS / "report.js").read_text(encoding="utf-8")}</script>
</body></html>
"""
