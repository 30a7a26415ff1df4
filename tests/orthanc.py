"""A real Orthanc PACS for the tests: Debian's ``orthanc`` with its DICOMweb plugin
(``orthanc-dicomweb``), configured in a temporary folder and stopped at the end.

HTTP on a free port, the DICOM port off, remote access off (Orthanc 1.10 has no bind-address
setting: it listens on every interface but answers loopback clients only), basic authentication
with a test user and a random password, storage and index in the temporary folder.
"""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")


def dicomweb_plugin() -> Path | None:
    return next((p for d in PLUGIN_DIRS for p in sorted(Path(d).glob("libOrthancDicomWeb.so*"))), None)


def missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if not Path(ORTHANC).is_file():
        return "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin not installed (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    rest: str  # http://127.0.0.1:PORT
    user: str
    password: str

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


@contextmanager
def running_orthanc(folder: Path):
    """Start Orthanc with its storage in ``folder``; yields an :class:`OrthancServer`."""
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    port, password = free_port(), secrets.token_urlsafe(16)
    config = {
        "Name": "pneumo-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": port, "DicomServerEnabled": False, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {"pneumo-test": password},
        "Plugins": [str(dicomweb_plugin())], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpCompressionEnabled": False, "StableAge": 1,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = (folder / "orthanc.log").open("w")
    proc = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            cwd=folder)
    server = OrthancServer(f"http://127.0.0.1:{port}", "pneumo-test", password)
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
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
