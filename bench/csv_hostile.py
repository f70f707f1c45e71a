"""CSV line by line reader: parse time of hostile and ordinary payloads, before/after.

Hostile: lines of ``x","`` (each opens a quote that never closes; the former reader
started again from each line and read to the end: the square of the size).
Ordinary: meter readings with one bad line, which sends the payload line by line.
"Before" is csv_format.py as it was before the linear reader (the parent of the
commit that added csv_records.py, or ``--before REV``), loaded from git.

    uv run python bench/csv_hostile.py [--before REV] [--sizes 1000,4000,16000]

Figures only, best of a few runs; on a shared machine compare the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.ingest.formats import csv_format  # noqa: E402
from services.runtime.cities import CsvOptions  # noqa: E402
from testkit.ingest_sources import parser_source  # noqa: E402

SOURCE = parser_source("csv", "id", numeric=("v",), csv=CsvOptions(separator=","))
MODULE = "services/ingest/formats/csv_format.py"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def former(rev: str | None) -> ModuleType:
    """csv_format.py at ``rev`` (default: before csv_records.py was added)."""
    if rev is None:
        added = _git(
            "log", "--diff-filter=A", "--format=%H", "--", "services/ingest/formats/csv_records.py"
        ).splitlines()
        rev = f"{added[-1]}^" if added else "HEAD"
    text = _git("show", f"{rev}:{MODULE}")
    path = Path(tempfile.mkdtemp()) / "csv_format_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("csv_format_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def hostile(lines: int) -> str:
    return "id,v\n" + 'x","\n' * lines


def ordinary(lines: int) -> str:
    body = "".join(f"m{i % 500},{i}\n" for i in range(lines))
    return "id,v\nm9,NaN\n" + body  # one bad line: read line by line


def seconds(parse: Callable[[bytes, str, str, CsvOptions, object], object], text: str) -> float:
    data, best = text.encode(), float("inf")
    assert SOURCE.csv is not None
    for _ in range(3):
        began = time.perf_counter()
        parse(data, text, "utf-8", SOURCE.csv, SOURCE)
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the former reader")
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument(
        "--skip-before-over",
        type=int,
        default=16_000,
        help="hostile sizes above this are not run before (quadratic)",
    )
    args = parser.parse_args()
    before = former(args.before)
    print(f"{'payload':<10}{'lines':>8}{'before s':>12}{'after s':>12}{'ratio':>10}")
    for kind, make in (('x","', hostile), ("ordinary", ordinary)):
        for lines in map(int, args.sizes.split(",")):
            text = make(lines)
            after = seconds(csv_format._parse_by_line, text)
            if kind == "ordinary" or lines <= args.skip_before_over:
                old = seconds(before._parse_by_line, text)
                ratio = f"{old / after:>9.1f}x"
                shown = f"{old:>12.3f}"
            else:
                shown, ratio = f"{'-':>12}", f"{'-':>10}"
            print(f"{kind:<10}{lines:>8}{shown}{after:>12.3f}{ratio}")


if __name__ == "__main__":
    main()
