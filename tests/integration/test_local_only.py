"""Local by default: ``streamlit run app.py`` with no address given (as ``make run`` starts it) listens on the
loopback interface only. Checked on a real server: it answers on 127.0.0.1, refuses a connection on this
machine's own network address, and prints no "Network URL"."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

from scripts.screenshots import free_port
from tests.helpers.browser import ROOT
from tests.helpers.support import require


def network_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only picks the interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_shipped_settings_bind_loopback():
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"


def test_a_default_start_is_reachable_from_this_machine_only(tmp_path):
    address = network_address()
    require(address is not None, "this machine has no non-loopback address to try")
    port = free_port()
    log = tmp_path / "streamlit.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300  # start-up on a loaded 2-core machine; not a timing check
            while True:
                assert server.poll() is None, log.read_text()[-2000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                        assert reply.status == 200
                        break
                except OSError:
                    assert time.time() < deadline, "the server never answered on 127.0.0.1"
                    time.sleep(0.5)
            with socket.socket() as outside:
                outside.settimeout(5)
                assert outside.connect_ex((address, port)) != 0, f"the dashboard answers on {address}:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log.read_text()
    assert "Network URL" not in text and f"http://127.0.0.1:{port}" in text, text[-2000:]
