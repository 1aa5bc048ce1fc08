"""`lfp app RUN`: starts the dashboard on a run and says where to open it; bad input fails in one line."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from precompute.cli import main

from .browser import free_port, wait_healthy
from .conftest import ROOT, lfp_command

T = TypeVar("T")


def serve(run: Path, inspect: Callable[[int], T]) -> tuple[T, str]:
    """Start `lfp app RUN` on a free port, call `inspect(port)` once it answers, stop it; return what
    `inspect` returned and everything the command printed."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(lfp_command("app", str(run), "--port", str(port)), cwd=run.parent,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        seen = inspect(port)
    finally:
        process.terminate()  # `lfp app` became the server: this stops it, nothing is left behind
        output = process.communicate(timeout=20)[0]
    return seen, output


def test_app_starts_the_dashboard_and_says_where(micro_run):
    port, output = serve(micro_run, lambda port: port)
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


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from the kernel's tables (/proc/net/tcp, tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(ordered)) if width == 8 else str(ipaddress.IPv6Address(ordered)))
    return found


def test_the_default_listens_on_loopback_only(micro_run):
    addresses, output = serve(micro_run, listening_addresses)
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
    assert "warning" not in output


def test_an_explicit_address_is_passed_on_and_warned_about(micro_run, monkeypatch, capsys):
    from precompute import cli

    default = cli.streamlit_command(micro_run, 8501, cli.LOOPBACK)
    assert default[default.index("--server.address") + 1] == "localhost"
    assert cli.is_loopback("localhost") and cli.is_loopback("127.0.0.1") and cli.is_loopback("::1")
    assert not cli.is_loopback("0.0.0.0") and not cli.is_loopback("no-such-host.invalid")
    started = []
    monkeypatch.setattr(cli.os, "execv", lambda path, command: started.append(command))
    cli.main(["app", str(micro_run), "--port", str(free_port()), "--address", "0.0.0.0"])
    assert started[0][started[0].index("--server.address") + 1] == "0.0.0.0"
    err = capsys.readouterr().err
    assert "lfp: warning: listening on 0.0.0.0" in err and "authenticating proxy" in err


def test_with_streamlit_authentication_only_a_logged_in_visitor_sees_the_run(micro_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from .apptest import MAIN

    monkeypatch.setattr(sys, "argv", [str(MAIN), "--run", str(micro_run), "--runs", str(micro_run.parent)])
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s3cret",
                          "client_id": "lfp", "client_secret": "x",
                          "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"] and len(at.sidebar.selectbox) == 0
    assert "log in to open it" in at.markdown[0].value
    at.user = {"is_logged_in": True, "email": "ann@example.com"}
    at.run()
    assert not at.exception
    assert len(at.sidebar.selectbox) == 1 and "Signed in as ann@example.com" in at.sidebar.caption[0].value
