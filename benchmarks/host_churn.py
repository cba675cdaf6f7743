"""Host churn: minor page faults and kernel CPU time of a render, TensorFlow's BFC CPU allocator on and off.

    python benchmarks/host_churn.py [--size 512] [--frames 2] [--iterations 10] [--optimizer scipy-lbfgs]

Renders the same frames twice with TF_CPU_ALLOCATOR_USE_BFC false and true (pipeline/__init__.py
sets it true unless the user set it) and reports, from the finished children's resource usage,
minor page faults, user and system CPU seconds, the kernel's share, and the wall clock.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown_table  # noqa: E402

COLUMNS = ["allocator", "minor page faults", "user s", "system s", "kernel share", "wall s"]


def render(root: Path, bfc: str, args) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "cli.py"), str(REPO / "samples" / "realshort.mp4"),
                    "--style", str(REPO / "samples" / "kandinsky.jpg"), "--size", str(args.size), "--end", str(args.frames),
                    "--first-frame-iterations", str(args.iterations), "--frame-iterations", str(args.iterations),
                    "--stop-tolerance", "0", "--optimizer", args.optimizer, "--quiet",
                    "-o", str(root / f"bfc-{bfc}.mp4"), "--workdir", str(root / f"bfc-{bfc}.work")],
                   check=True, env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": bfc})
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"allocator": "BFC" if bfc == "true" else "default", "minor page faults": after.ru_minflt - before.ru_minflt,
            "user s": user, "system s": system, "kernel share": system / (user + system), "wall s": wall}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--optimizer", default="scipy-lbfgs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="host-churn-") as root:
        rows = [render(Path(root), bfc, args) for bfc in ("false", "true")]
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
