"""PACS settings: where the DICOMweb server is and how to sign in, from the environment or
Streamlit secrets only (never from a page's user); the CLI may give the URL. Validated here, so a
bad setting is one clear line before any connection is tried.

    PNEUMO_DICOMWEB_URL        the DICOMweb root, e.g. https://pacs.example.org/dicom-web
    PNEUMO_DICOMWEB_USER       } basic sign-in (both, or neither)
    PNEUMO_DICOMWEB_PASSWORD   }
    PNEUMO_DICOMWEB_TOKEN      bearer token (instead of user and password)
    PNEUMO_DICOMWEB_CA_BUNDLE  PEM file or folder of a private certificate authority (TLS is always verified)
    PNEUMO_DICOMWEB_TIMEOUT    seconds per call, default 10
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pneumo_core.config import server_setting
from pneumo_core.errors import PacsError

ENV_URL, ENV_USER, ENV_PASSWORD = "PNEUMO_DICOMWEB_URL", "PNEUMO_DICOMWEB_USER", "PNEUMO_DICOMWEB_PASSWORD"
ENV_TOKEN, ENV_CA_BUNDLE, ENV_TIMEOUT = "PNEUMO_DICOMWEB_TOKEN", "PNEUMO_DICOMWEB_CA_BUNDLE", "PNEUMO_DICOMWEB_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MODALITIES = ("CR", "DX")


# ---------------------------------------------------------------- settings
@dataclass(frozen=True, repr=False)
class PacsSettings:
    """Where the PACS is and how to sign in. ``repr``/``str`` name the kind of sign-in only."""

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    ca_bundle: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def auth_kind(self) -> str:
        """How the PACS is authenticated, in words (never the secret)."""
        return "bearer token" if self.token else "basic (user and password)" if self.user else "none"

    @property
    def location(self) -> str:
        """scheme://host:port: how messages name the server."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    @property
    def cleartext_credentials(self) -> bool:
        """Credentials would travel unencrypted (http://) to another machine."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        return self.auth_kind != "none" and parts.scheme == "http" and not local

    def __repr__(self) -> str:
        return (f"PacsSettings(url={self.url!r}, auth={self.auth_kind!r}, ca_bundle={self.ca_bundle!r}, "
                f"timeout={self.timeout:g})")

    __str__ = __repr__


def _setting(name: str, environ, secrets) -> str | None:
    value = server_setting(name, environ, secrets)
    value = None if value is None else str(value).strip()
    return value or None


def pacs_configured(environ=None, secrets=None) -> bool:
    """Whether a PACS URL is set (the page shows its "From PACS" source only then)."""
    return _setting(ENV_URL, os.environ if environ is None else environ, secrets) is not None


def load_settings(url: str | None = None, environ=None, secrets=None) -> PacsSettings:
    """Settings from ``environ`` (default ``os.environ``), then ``secrets`` (e.g. ``st.secrets``, same
    key names); ``url`` (the CLI's ``--dicomweb``) replaces the configured URL. Raises PacsError."""
    from urllib.parse import urlsplit

    environ = os.environ if environ is None else environ
    url = (url or "").strip() or _setting(ENV_URL, environ, secrets)
    if not url:
        raise PacsError(f"no PACS configured: set {ENV_URL} to the server's DICOMweb root, "
                        "e.g. https://pacs.example.org/dicom-web")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise PacsError("the DICOMweb URL is malformed (bad port or brackets)") from None
    if parts.username or parts.password:
        raise PacsError(f"the DICOMweb URL holds credentials: put them in {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}, "
                        "never in the URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError("the DICOMweb URL must start with https:// (or http:// on a trusted network) and name a host")
    if parts.query or parts.fragment:
        raise PacsError("the DICOMweb URL must be the service root, without ?query or #fragment")
    user, password = _setting(ENV_USER, environ, secrets), _setting(ENV_PASSWORD, environ, secrets)
    token, ca_bundle = _setting(ENV_TOKEN, environ, secrets), _setting(ENV_CA_BUNDLE, environ, secrets)
    if bool(user) != bool(password):
        raise PacsError(f"set both {ENV_USER} and {ENV_PASSWORD} for basic sign-in (only one is set)")
    if token and user:
        raise PacsError(f"set either {ENV_TOKEN} or {ENV_USER}/{ENV_PASSWORD}, not both")
    if ca_bundle and not os.path.exists(ca_bundle):
        raise PacsError(f"{ENV_CA_BUNDLE} names a file that does not exist")  # not the path: visitors read it
    text = _setting(ENV_TIMEOUT, environ, secrets)
    try:
        timeout = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        timeout = float("nan")
    if not 0.1 <= timeout <= 300:
        raise PacsError(f"{ENV_TIMEOUT} must be a number of seconds from 0.1 to 300, got {text!r}")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    clean = f"{parts.scheme}://{host}" + (f":{port}" if port else "") + parts.path.rstrip("/")
    return PacsSettings(clean, user, password, token, ca_bundle, timeout)


def parse_modalities(text: str | None) -> tuple[str, ...]:
    """``"DX,CR"`` -> ``("DX", "CR")``; ``None`` gives CR and DX."""
    if text is None:
        return DEFAULT_MODALITIES
    codes = tuple(dict.fromkeys(c.strip().upper() for c in str(text).split(",") if c.strip()))
    if not codes or not all(re.fullmatch(r"[A-Z]{2,4}", c) for c in codes):
        raise PacsError(f"modalities must be DICOM codes separated by commas, e.g. DX,CR; got {str(text)[:40]!r}")
    return codes
