"""End to end: the real command on the sample clip, per preset: wall time, seconds per frame,
peak memory of the process.

    python benchmarks/end_to_end.py [--presets preview,default] [--end N]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402


def render_once(preset: str, end: int | None, out_dir: Path) -> dict:
    output = out_dir / f"{preset}.mp4"
    command = [sys.executable, "cli.py", "samples/realshort.mp4", "--style", "samples/kandinsky.jpg",
               "-o", str(output), "--preset", preset, "--quiet"] + (["--end", str(end)] if end else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{preset}: render failed\n{done.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    frames = len(list((out_dir / f"{preset}.work" / "frames").glob("*.png")))
    return {"preset": preset, "frames": frames, "wall s": wall, "s / frame": wall / frames,
            "peak RSS MiB": max(peak_kib, before) / 1024, "command": " ".join(command[1:])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="preview,default")
    parser.add_argument("--end", type=int, help="render only the first N frames")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for preset in args.presets.split(","):
            rows.append(render_once(preset, args.end, Path(out_dir)))
            print(rows[-1], flush=True)
    table = markdown_table(rows, ["preset", "frames", "wall s", "s / frame", "peak RSS MiB"])
    print(table)
    append_results("End to end on the sample clip", table,
                   "Wall time of the whole command (start-up, weights, render, encode); peak RSS is the "
                   "largest child process so far (ru_maxrss), i.e. an upper bound for later rows.")


if __name__ == "__main__":
    main()
