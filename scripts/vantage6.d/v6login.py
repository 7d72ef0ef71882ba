"""Logs in to vantage6 HQ with the official vantage6 5 client, without a browser.

`UserClient.authenticate()` only does the OAuth device flow, which needs a
person at a browser. The test realm that scripts/vantage6 imports lets its
client `public_client` use the password grant instead, so this module gets a
token with it from Keycloak (through the client's own `kc_openid`, a
python-keycloak KeycloakOpenID for that client) and hands it to the client's
own post-login step, `_finalize_successful_authentication`, which stores the
access and refresh tokens and loads the user's identity exactly as the
device flow does. Token refreshes then go through the client's usual path.

    from v6login import login
    client = login()          # reads V6_HQ_URL, V6_AUTH_URL, V6_USER, V6_PASSWORD
"""

import os

from vantage6.client import UserClient


def login(
    hq_url: str | None = None,
    auth_url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    log_level: str = "warn",
) -> UserClient:
    """A UserClient logged in as USERNAME (default: the V6_* environment)."""
    env = os.environ
    client = UserClient(
        hq_url or env["V6_HQ_URL"],
        auth_url or env["V6_AUTH_URL"],
        log_level=log_level,
    )
    token = client.kc_openid.token(
        username or env["V6_USER"], password or env["V6_PASSWORD"], grant_type="password"
    )
    client._finalize_successful_authentication(token)
    if not client._access_token or not getattr(client, "whoami", None):
        raise RuntimeError("vantage6 login failed (see the client's log above)")
    return client
