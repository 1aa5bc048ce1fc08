"""`lfp app RUN`: starts the dashboard on a run and says where to open it; bad input fails in one line."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from precompute.cli import main

from .browser import free_port, wait_healthy
from .conftest import ROOT, lfp_command


def test_app_starts_the_dashboard_and_says_where(micro_run):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(lfp_command("app", str(micro_run), "--port", str(port)), cwd=micro_run.parent,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()  # `lfp app` became the server: this stops it, nothing is left behind
        output = process.communicate(timeout=20)[0]
    assert f"open http://localhost:{port} in a browser" in output


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp, port: ["app", str(tmp / "nowhere")], "is not a run folder"),
    (lambda tmp, port: ["app", "RUN", "--port", "70000"], "--port must be between 1 and 65535"),
    (lambda tmp, port: ["app", "RUN", "--port", str(port)], "is in use"),
])
def test_app_bad_input_is_one_line(micro_run, tmp_path, capsys, make_args, message):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        argv = [str(micro_run) if a == "RUN" else a for a in make_args(tmp_path, busy.getsockname()[1])]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lfp: error: ") and message in err and "Traceback" not in err
