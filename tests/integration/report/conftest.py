"""The demo's output, made once per session: what `make demo` leaves in .demo/, in a temporary folder."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> Path:
    """`tweetmood demo` run into a temporary folder (the real handler on moto's S3); returns the folder."""
    from tweetmood_cli.localstack import run_demo

    out = tmp_path_factory.mktemp("demo")
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_demo(out_dir=out) == 0
    return out
