"""Faults for the test Ray cluster, installed in each of its workers at start-up
(`worker_process_setup_hook`); never part of the product.

Once a test deletes the marker file named by NST_TEST_CRASH_MARKER, the first chunk to start
kills its own worker process (as an out-of-memory kill or a lost node would), exactly once
across all workers: Ray must then run that chunk again.
"""
from __future__ import annotations

import os
from pathlib import Path

MARKER_ENV = "NST_TEST_CRASH_MARKER"


def install() -> None:
    from pipeline import chain

    real_render_frames = chain.render_frames

    def render_frames(*args, **kwargs):
        try:
            Path(os.environ[MARKER_ENV]).open("x").close()  # exclusive create: exactly one task crashes
        except FileExistsError:
            return real_render_frames(*args, **kwargs)
        os._exit(1)

    chain.render_frames = render_frames
