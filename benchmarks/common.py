"""Shared by the benchmarks: a markdown table, and appending it to RESULTS.md with its provenance."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def provenance() -> str:
    """The code and the libraries a result was measured with: the git commit (marked "+changes"
    when the tree differs from it) and the versions that decide speed and pixels."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    except OSError:
        commit, dirty = "", ""
    versions = []
    for package in ("tensorflow", "keras", "numpy", "opencv-contrib-python-headless", "scipy", "imageio-ffmpeg"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return f"commit {commit or 'unknown'}{' +changes' if dirty.strip() else ''}; " + ", ".join(versions)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def append_results(title: str, table: str, note: str = "") -> None:
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    block = f"\n## {title} ({stamp})\n\n`{command}` on {machine()}; {provenance()}\n\n{note}\n\n{table}\n"
    with open(RESULTS, "a") as stream:
        stream.write(block)


def publish(title: str, table: str, note: str, record: bool) -> None:
    """Print the table with the machine and code it ran on; with `record`, append it to RESULTS.md too."""
    print(f"{machine()}; {provenance()}\n{note}\n\n{table}")
    if record:
        append_results(title, table, note)
