"""Where credentials are documented to live (``.streamlit/secrets.toml``, a ``.env`` file) git ignores them, so
a PACS password cannot be committed by ``git add -A``."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("relative", [".streamlit/secrets.toml", ".env"])
def test_credential_files_are_ignored(relative):
    require(shutil.which("git") is not None and (ROOT / ".git").exists(), "not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT)
    assert ignored.returncode == 0, f"{relative} is not ignored by git"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", relative], cwd=ROOT, capture_output=True)
    assert tracked.returncode != 0, f"{relative} is committed"
