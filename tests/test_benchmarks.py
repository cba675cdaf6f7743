"""The benchmarks' provenance line: every appended result names the code and libraries it measured."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import provenance  # noqa: E402


def test_provenance_names_the_commit_and_the_deciding_libraries():
    line = provenance()
    assert re.match(r"commit [0-9a-f]{7,}( \+changes)?; ", line), line
    assert re.search(r"tensorflow \d+\.\d+", line) and re.search(r"numpy \d+\.\d+", line)
