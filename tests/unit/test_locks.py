"""The hash-locked requirement files: every install the Makefile does comes from a lock, every locked package
carries its SHA-256, and each lock agrees with the direct pins it was compiled from (a requirements*.txt edited
without ``make lock`` fails here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each lock and the direct-dependency files it is compiled from (Makefile, target ``lock``).
LOCKS = {
    "requirements.lock": ("requirements.txt",),
    "requirements-train.lock": ("requirements.txt", "requirements-train.txt"),
    "requirements-scale.lock": ("requirements.txt", "requirements-scale.txt"),
    "requirements-dev.lock": ("requirements.txt", "requirements-train.txt", "requirements-scale.txt",
                              "requirements-dev.txt"),
}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;\\]+)")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalised name


def direct_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_key(match.group(1))] = match.group(3)
    return pins


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """``name -> (version, number of hashes)`` of a lock compiled with ``--generate-hashes``."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = _key(match.group(1))
            entries[current] = (match.group(3), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


def test_parsers_see_pins_and_hashes(tmp_path):
    """The checks below can fail: a lock entry without a hash and a pin with extras are read as such."""
    lock = tmp_path / "x.lock"
    lock.write_text("a-b==1.0 \\\n    --hash=sha256:00\nc==2\n")
    assert locked(lock) == {"a-b": ("1.0", 1), "c": ("2", 0)}
    txt = tmp_path / "x.txt"
    txt.write_text("# c\nPsycopg[binary]==3.3.9\nfoo>=1\n")
    assert direct_pins(txt) == {"psycopg": "3.3.9"}


@pytest.mark.parametrize("lock_name", sorted(LOCKS))
def test_every_locked_package_is_hashed(lock_name):
    entries = locked(ROOT / lock_name)
    assert len(entries) > 10
    unhashed = sorted(name for name, (_, hashes) in entries.items() if hashes == 0)
    assert not unhashed, f"{lock_name}: no --hash for {unhashed}"


@pytest.mark.parametrize("lock_name", sorted(LOCKS))
def test_lock_matches_its_direct_pins(lock_name):
    entries = locked(ROOT / lock_name)
    for source in LOCKS[lock_name]:
        for name, version in direct_pins(ROOT / source).items():
            assert name in entries, f"{source} pins {name} but {lock_name} lacks it: run `make lock`"
            assert entries[name][0] == version, (f"{source} pins {name}=={version} but {lock_name} has "
                                                 f"{entries[name][0]}: run `make lock`")


def test_runtime_versions_are_the_same_in_every_lock():
    runtime = {name: version for name, (version, _) in locked(ROOT / "requirements.lock").items()}
    for lock_name in ("requirements-train.lock", "requirements-scale.lock", "requirements-dev.lock"):
        other = locked(ROOT / lock_name)
        differ = {name: (version, other.get(name, ("missing",))[0]) for name, version in runtime.items()
                  if other.get(name, ("missing",))[0] != version}
        assert not differ, f"{lock_name} moves runtime packages: {differ}"


def test_makefile_installs_only_from_locks():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line.strip() for line in makefile.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        if "--no-deps -e ." in line:  # the project itself, no dependencies
            continue
        assert "--require-hashes" in line and re.search(r"-r requirements[\w-]*\.lock", line), line
    assert "--upgrade pip" not in makefile  # the one unpinned download
