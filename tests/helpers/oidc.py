"""A real OpenID Connect provider for the tests: PyPI's ``oidc-provider-mock`` (Authlib's own authorization server
under Flask: discovery document, JWKS, the authorization-code flow, RS256-signed ID tokens) on a free 127.0.0.1
port, in a thread of the test process, and the ``[auth]`` secrets that point Streamlit's ``st.login`` at it.

Its sign-in page lists the users given to :func:`running_provider` as one-click buttons, so a browser signs in as
a chosen user with chosen claims (e-mail, a ``roles`` claim). Chosen over npm's ``oidc-provider``: pure Python,
installed from requirements-dev.txt with the other test tools (no Node.js), started in-process in well under a
second, and still a full provider that Streamlit reaches over HTTP exactly as it would a hospital's.
"""
from __future__ import annotations

import json
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.support import require


@dataclass(frozen=True)
class Provider:
    url: str  # http://127.0.0.1:PORT

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"


@contextmanager
def running_provider(users: dict[str, dict]):
    """The provider on 127.0.0.1 with ``users`` (subject -> claims) offered on its sign-in page; nonces required,
    as Streamlit sends them. Skips (fails under CI) when oidc-provider-mock is not installed."""
    try:
        import oidc_provider_mock
        from werkzeug.serving import make_server
    except ImportError:
        require(False, "oidc-provider-mock not installed (pip install -r requirements-dev.txt)")
    flask_app = oidc_provider_mock.app(require_nonce=True, user_claims=[
        oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in users.items()])
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def auth_section(provider: Provider, app_url: str) -> dict[str, str]:
    """An ``[auth]`` section for a dashboard served at ``app_url``, signing in with ``provider``; fresh random
    client and cookie secrets each call."""
    return {"redirect_uri": f"{app_url}/oauth2callback", "cookie_secret": secrets.token_urlsafe(32),
            "client_id": "pneumo-workbench-test", "client_secret": secrets.token_urlsafe(24),
            "server_metadata_url": provider.metadata_url}


def write_secrets(path: Path, auth: dict[str, str] | None = None, **settings: str) -> Path:
    """A secrets.toml at ``path`` with top-level ``settings`` and, when given, the ``[auth]`` section (strings only:
    a JSON string is a valid TOML basic string)."""
    lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    if auth:
        lines += ["", "[auth]", *(f"{name} = {json.dumps(value)}" for name, value in auth.items())]
    path.write_text("\n".join(lines) + "\n")
    return path
