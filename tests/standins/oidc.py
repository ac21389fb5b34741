"""The city's single sign-on, stood in for by a real OpenID Provider (``oidc-provider`` from npm,
run by node: oidc.mjs), on a free port of 127.0.0.1."""

import json
import subprocess
import time
from pathlib import Path

import httpx

SCRIPT = Path(__file__).with_name("oidc.mjs")
CLIENT_ID, CLIENT_SECRET = "geocloud-portal", "portal-secret-for-tests"


def settings(port: int) -> dict:
    """geocloud's settings for the provider on ``port``: the portal's client, and bearer JWTs alike."""
    issuer = f"http://127.0.0.1:{port}"
    return {"GEOCLOUD_OIDC_ISSUER": issuer, "GEOCLOUD_OIDC_CLIENT_ID": CLIENT_ID,
            "GEOCLOUD_OIDC_CLIENT_SECRET": CLIENT_SECRET, "GEOCLOUD_OIDC_AUDIENCE": CLIENT_ID,
            "GEOCLOUD_OIDC_JWKS": issuer + "/jwks", "GEOCLOUD_OIDC_SCOPES": "openid profile geocloud"}


class OpenIDProvider:
    """The provider on ``port`` (geocloud may start first: it reads the discovery document on the
    first sign-in), with one client whose redirect URI is ``redirect_uri``."""

    def __init__(self, port: int, redirect_uri: str, accounts: dict, log: Path):
        self.issuer = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(["node", str(SCRIPT), str(port), CLIENT_ID, CLIENT_SECRET, redirect_uri,
                                          json.dumps(accounts, ensure_ascii=False)], stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the OpenID Provider did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
