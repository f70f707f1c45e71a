"""The ClickHouse JDBC driver for the SQL door's tests: its jars fetched from Maven
Central by the checked-in list (deploy/jdbc/artifacts.lock, SHA-256 checked, no
Maven needed), and the small Java program of tests/fixtures/jdbc run on the bundled
Java runtime, as DBeaver or Superset would connect."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from services.infra import paths
from services.infra.artifacts import (
    adopt_if_identical,
    cache_is_current,
    download_all,
    mark_current,
    read_lock,
)
from services.infra.java import find_java
from services.runtime.paths import REPO_ROOT

LOCK = REPO_ROOT / "deploy" / "jdbc" / "artifacts.lock"
PROGRAM = REPO_ROOT / "tests" / "fixtures" / "jdbc"


def ensure_jdbc_jars() -> Path:
    """The driver's jars, downloaded and verified on first use, swapped in whole."""
    libs = paths.cache_dir() / "jdbc" / "libs"
    artifacts = read_lock(LOCK)
    if cache_is_current(libs, LOCK) or adopt_if_identical(libs, artifacts, LOCK):
        return libs
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        download_all(artifacts, partial, "ClickHouse JDBC driver jars")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    mark_current(partial, LOCK)
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def program_is_current() -> bool:
    """The committed Questions.class was compiled from the committed Questions.java
    (the bundled runtime cannot compile: a source change must be recompiled by hand)."""
    recorded = (PROGRAM / "Questions.class.sha256").read_text(encoding="ascii").split()[0]
    return hashlib.sha256((PROGRAM / "Questions.java").read_bytes()).hexdigest() == recorded


def run_questions(
    url: str, user: str, password: str, questions: dict[str, str], workdir: Path
) -> str:
    """The program's output for ``questions`` (slug -> SQL) on the driver at ``url``."""
    libs = ensure_jdbc_jars()
    file = workdir / "questions.sql"
    file.write_text("".join(f"-- {slug}\n{sql}\n" for slug, sql in questions.items()))
    classpath = ":".join([*(str(p) for p in sorted(libs.glob("*.jar"))), str(PROGRAM)])
    java = find_java(17, "the JDBC test program")
    done = subprocess.run(
        [java, "-cp", classpath, "Questions", url, user, password, str(file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the JDBC program failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout
