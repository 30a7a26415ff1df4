"""A real Orthanc PACS for the tests: Debian's ``orthanc`` with its DICOMweb plugin
(``orthanc-dicomweb``), configured in a temporary folder and stopped at the end.

Reachable from nowhere but this test process: Debian's Orthanc 1.10 has no bind-address setting
(it listens on every interface), so it runs in a network namespace of its own (``unshare --net``,
root only) where the only interface is a loopback nobody else shares. A relay in that namespace
(this file run as a script) forwards a Unix socket in the temporary folder to Orthanc's port, and
a relay thread in the test process forwards a free 127.0.0.1 port to that socket: the tests (and
Streamlit, and Chromium) talk to ``http://127.0.0.1:PORT`` as if Orthanc listened there.

The DICOM port is off, remote access off, basic authentication with a test user and a random
password, storage and index in the temporary folder.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
IP = shutil.which("ip") or "/usr/sbin/ip"
ORTHANC_PORT = 8042  # inside the namespace: no other process there, so any fixed port is free


#: The PACS settings a test sets (and clears, so the user's own never leak in).
ENV_NAMES = ("PNEUMO_DICOMWEB_URL", "PNEUMO_DICOMWEB_USER", "PNEUMO_DICOMWEB_PASSWORD", "PNEUMO_DICOMWEB_TOKEN",
             "PNEUMO_DICOMWEB_CA_BUNDLE", "PNEUMO_DICOMWEB_TIMEOUT")


def dicomweb_plugin() -> Path | None:
    """Debian's Orthanc DICOMweb plugin, or None."""
    return next((p for d in PLUGIN_DIRS for p in sorted(Path(d).glob("libOrthancDicomWeb.so*"))), None)


@lru_cache(maxsize=1)
def _namespace_problem() -> str | None:
    """Why Orthanc cannot get a network namespace of its own here, or None."""
    if os.geteuid() != 0:
        return "Orthanc is isolated in its own network namespace (unshare --net), which needs root"
    for tool in (UNSHARE, IP):
        if not Path(tool).is_file():
            return f"{Path(tool).name} not installed (util-linux / iproute2): needed to isolate Orthanc"
    try:
        probe = subprocess.run([UNSHARE, "--net", "--", IP, "link", "set", "lo", "up"], capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --net failed here ({type(exc).__name__})"
    if probe.returncode != 0:
        return f"unshare --net is not permitted here: {probe.stderr.strip()[:160]}"
    return None


def missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if not Path(ORTHANC).is_file():
        return "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin not installed (apt-get install orthanc-dicomweb)"
    return _namespace_problem()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    rest: str  # http://127.0.0.1:PORT (the relay in the test process)
    user: str
    password: str
    namespace_pid: int | None = None  # a process in Orthanc's network namespace (/proc/PID/ns/net)

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    def env(self, **overrides) -> dict:
        """The PNEUMO_DICOMWEB_* settings for this server."""
        return {"PNEUMO_DICOMWEB_URL": self.dicomweb, "PNEUMO_DICOMWEB_USER": self.user,
                "PNEUMO_DICOMWEB_PASSWORD": self.password, "PNEUMO_DICOMWEB_TIMEOUT": "10", **overrides}

    def upload(self, data: bytes) -> str:
        """Store one DICOM file through Orthanc's REST API; its Orthanc ID."""
        import requests

        answer = requests.post(f"{self.rest}/instances", data=data, auth=(self.user, self.password), timeout=30)
        answer.raise_for_status()
        return answer.json()["ID"]


# ---------------------------------------------------------------- relays
def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then pass the end on (half-close) and
    close this direction's sockets (each direction holds its own duplicates)."""
    try:
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        source.close()
        sink.close()


def _splice(client: socket.socket, connect) -> None:
    """Join ``client`` to a new connection from ``connect()``, one thread each way."""
    try:
        upstream = connect()
        # both duplicates before either thread starts: a pump that ends at once closes its sockets
        to_upstream, to_client = upstream.dup(), client.dup()
    except OSError:
        client.close()
        return
    threading.Thread(target=_pump, args=(client, to_upstream), daemon=True).start()
    threading.Thread(target=_pump, args=(upstream, to_client), daemon=True).start()


def _serve(listener: socket.socket, connect, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return  # the listener was closed
        client.settimeout(None)
        _splice(client, connect)


def _unix_connector(path: Path):
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        return sock

    return connect


def _inside_namespace(unix_path: str, config: str) -> int:
    """Run in the namespace: bring ``lo`` up, start Orthanc, relay ``unix_path`` to its port."""
    subprocess.run([IP, "link", "set", "lo", "up"], check=True)
    orthanc = subprocess.Popen([ORTHANC, config], cwd=str(Path(config).parent))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(unix_path)
    listener.listen(64)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay = threading.Thread(target=_serve, args=(listener, lambda: socket.create_connection(
        ("127.0.0.1", ORTHANC_PORT), timeout=30), stop), daemon=True)
    relay.start()
    parent = os.getppid()
    # stops with the test process too: an orphaned Orthanc would hold its storage folder
    while not stop.is_set() and orthanc.poll() is None and os.getppid() == parent:
        stop.wait(0.2)
    orthanc.terminate()
    try:
        orthanc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        orthanc.kill()
    listener.close()
    return orthanc.returncode or 0


@contextmanager
def running_orthanc(folder: Path):
    """Start Orthanc, isolated, with its storage in ``folder``; yields an :class:`OrthancServer`
    whose address is a relay on 127.0.0.1."""
    import requests

    reason = _namespace_problem()
    if reason:
        raise RuntimeError(reason)
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    config = {
        "Name": "pneumo-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": ORTHANC_PORT, "DicomServerEnabled": False, "DicomPort": ORTHANC_PORT + 1,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {"pneumo-test": password},
        "Plugins": [str(dicomweb_plugin())], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpCompressionEnabled": False, "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    unix_path = folder / "orthanc.sock"
    log = (folder / "orthanc.log").open("w")
    proc = subprocess.Popen([UNSHARE, "--net", "--", sys.executable, __file__, str(unix_path),
                             str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    relay = threading.Thread(target=_serve, args=(listener, _unix_connector(unix_path), stop), daemon=True)
    relay.start()
    server = OrthancServer(f"http://127.0.0.1:{listener.getsockname()[1]}", "pneumo-test", password, proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({proc.returncode}): {(folder / 'orthanc.log').read_text()[-800:]}")
            try:
                if requests.get(f"{server.rest}/system", auth=(server.user, password), timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not start within 60 s")
            time.sleep(0.2)
        yield server
    finally:
        stop.set()
        relay.join(timeout=2)
        listener.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


if __name__ == "__main__":  # the relay inside the namespace (see running_orthanc)
    sys.exit(_inside_namespace(sys.argv[1], sys.argv[2]))

