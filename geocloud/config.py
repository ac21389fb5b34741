"""Settings, read from ``GEOCLOUD_*`` environment variables.

Every server worker and CLI process reads the same variables, so several processes on several
machines agree on the database, the data directory and the catalog without sharing memory.
"""

import contextvars
import getpass
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from geocloud.errors import ConfigError

_CHECKOUT = Path(__file__).resolve().parent.parent


def _default_project_dir() -> Path:
    """The folder holding ``layers/`` and ``etl/``: the checkout for an editable install, else cwd."""
    return _CHECKOUT if (_CHECKOUT / "layers").is_dir() else Path.cwd()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOCLOUD_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL of the PostGIS database, e.g. postgresql://u:p@host/db"
    )
    project_dir: Path = Field(default_factory=_default_project_dir)
    data_dir: Path | None = Field(default=None, description="Shared data directory (COGs, tile cache)")
    operator: str | None = Field(default=None, description="Who runs ETL commands; defaults to $USER")
    oidc_issuer: str | None = Field(default=None, description="OpenID Connect issuer of accepted bearer JWTs")
    oidc_audience: str | None = Field(default="geocloud", description="Audience the JWTs must name")
    oidc_jwks: str | None = Field(default=None, description="JWKS file or URL with the issuer's public keys")
    rate_limit_key: int = Field(default=6000, description="Requests per minute per API key, token or JWT subject")
    rate_limit_anonymous: int = Field(default=1200, description="Requests per minute per anonymous client address")
    public_url: str = Field(default="http://127.0.0.1:8000",
                            description="The server's URL as the public reaches it; metadata and portal payloads link here")
    trusted_proxies: str = Field(
        default="", description="Reverse proxies (IP addresses or CIDR networks, comma-separated) whose Forwarded and "
                                "X-Forwarded-* headers are believed; from anyone else they are ignored")
    allowed_hosts: str = Field(
        default="", description="Host names (comma-separated) links may be built for from the Host header, besides "
                                "GEOCLOUD_PUBLIC_URL's; any other Host gets links to GEOCLOUD_PUBLIC_URL")
    access_log: bool = Field(default=False, description="Log every request (credentials in queries redacted); "
                                                         "`geocloud serve --access-log` does the same")
    cors_origins: str = Field(
        default="*", description="Origins (comma-separated) browsers may read answers from, '*' for any, "
                                 "empty for none; never with credentials (cookies, browser-cached Basic auth)")
    tgos_csw_url: str | None = Field(default=None, description="TGOS CSW 2.0.2 endpoint that accepts CSW-T")
    tgos_username: str | None = None
    tgos_password: str | None = None
    datagov_url: str = Field(default="https://data.gov.tw", description="data.gov.tw agency API root")
    datagov_api_key: str | None = Field(default=None, description="The agency's data.gov.tw API key")
    publish_timeout: float = Field(default=30.0, description="Seconds to wait for a portal's answer")
    publish_retries: int = Field(default=3, description="Attempts per request when a portal fails transiently")
    publish_backoff: float = Field(default=2.0, description="Seconds before the first retry; doubles each time")
    db_timeout: float = Field(default=5.0, gt=0, description="Seconds a request waits for the database (a pooled "
                              "connection, or connecting) before it is answered 503 with Retry-After")
    db_statement_timeout: float = Field(default=15.0, gt=0, description="Seconds any one SQL statement a request "
                                        "starts may run before PostgreSQL cancels it (answered 503)")
    db_retry_after: int = Field(default=5, ge=1, description="Seconds a 503 for an unavailable database tells "
                                "clients to wait (Retry-After)")
    etl_max_removed_percent: float = Field(
        default=20.0, ge=0, description="ETL guard: a run removing more than this % of a live layer's features stops")
    etl_max_extent_change_percent: float = Field(
        default=25.0, ge=0, description="ETL guard: a run moving an edge of a layer's extent by more than this % of "
                                        "its width or height stops")
    metrics: str = Field(
        default="off", description="Who may read /metrics (Prometheus): off (404), key (a key, token or JWT with the "
                                   "role 'metrics'), and/or IP addresses or networks (comma-separated)")
    log_format: str = Field(
        default="text", description="`geocloud serve`'s log: text lines, or one JSON object a line with the request id")
    oidc_agency_claim: str = "agency"
    oidc_roles_claim: str = "roles"
    database_read_url: str | None = Field(
        default=None, description="PostgreSQL URL of the read replica(s) every read surface uses (libpq multi-host "
                                  "URLs work); writes go to GEOCLOUD_DATABASE_URL. Unset: reads use it too")
    replica_max_lag: float = Field(default=30.0, gt=0, description="Seconds a read replica may fall behind its "
                                   "primary before this node reads from the primary instead")
    exact_count_limit: int = Field(default=10_000, ge=0, description="A filtered items page counts its matches "
                                   "exactly while the planner expects at most this many; above, numberMatched is "
                                   "the planner's estimate (numberMatchedIsEstimate: true)")
    tile_cache_dir: Path | None = Field(default=None, description="Tile cache folder, e.g. on storage shared by "
                                        "several nodes; defaults to <data dir>/tile-cache")
    upload_max_bytes: int = Field(default=2 * 1024 ** 3, gt=0, description="The largest source file "
                                  "POST /manage/layers/{id}/data takes, in bytes (counted as it streams in)")
    oidc_client_id: str | None = Field(default=None, description="The portal's client id at the city's SSO: "
                                       "with it (and GEOCLOUD_OIDC_ISSUER) /signin offers the SSO button")
    oidc_client_secret: str | None = Field(default=None, description="The portal's client secret at the SSO "
                                           "(client_secret_basic); unset for a public client (PKCE alone)")
    oidc_redirect_base: str | None = Field(default=None, description="The portal's URL as the SSO redirects "
                                           "browsers back to it (+ /signin/callback); defaults to the URL the browser reached")
    oidc_scopes: str = Field(default="openid profile", description="Scopes the portal asks the SSO for; the ID "
                             "token must carry the agency and roles claims (GEOCLOUD_OIDC_AGENCY_CLAIM, ..._ROLES_CLAIM)")
    session_idle: int = Field(default=2 * 3600, gt=0, description="Seconds a portal session lives unused")
    session_max: int = Field(default=12 * 3600, gt=0, description="Seconds a portal session lives at most")
    etl_max_vertices: int = Field(default=1_000_000, gt=0, description="The most vertices one feature of a source "
                                  "may have (a real boundary polygon has a few hundred thousand at most)")
    etl_max_geojson_bytes: int = Field(default=1024 ** 3, gt=0, description="The largest GeoJSON file the ETL reads "
                                       "(GDAL parses it as one document: larger data comes as a GeoPackage)")
    etl_max_kml_bytes: int = Field(default=100 * 1024 ** 2, gt=0, description="The largest KML file the ETL reads "
                                   "(GDAL builds it in memory, about nine times its size)")
    etl_zip_max_members: int = Field(default=1000, gt=0, description="The most members a zipped source may hold")
    etl_zip_max_bytes: int = Field(default=8 * 1024 ** 3, gt=0, description="The most bytes a zipped source's "
                                   "members may expand to, together")
    etl_zip_max_ratio: int = Field(default=1000, gt=0, description="The most times a zip member over 1 MB may be "
                                   "compressed (deflate reaches about 1,030 only on filler, a zip bomb; shapefiles "
                                   "with wide blank text fields reach a few hundred)")

    @cached_property
    def link_hosts(self) -> frozenset[str]:
        """Host names whose Host header may appear in the links the server writes."""
        names = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        public = urlsplit(self.public_url).hostname
        return frozenset(names | ({public.lower()} if public else set()))

    @property
    def proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        try:
            return tuple(ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",") if p.strip())
        except ValueError as exc:
            raise ConfigError(f"GEOCLOUD_TRUSTED_PROXIES: {exc}", fix="list IP addresses or networks, e.g. "
                                                                        "10.0.0.5,192.168.10.0/24") from None

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def layers_dir(self) -> Path:
        return self.project_dir / "layers"

    @property
    def etl_dir(self) -> Path:
        return self.project_dir / "etl"

    @property
    def agencies_file(self) -> Path:
        return self.project_dir / "agencies.yml"

    @property
    def data_path(self) -> Path:
        return self.data_dir or self.project_dir / ".geocloud" / "data"


@lru_cache
def get_settings() -> Settings:
    return Settings()


# who a server acts for while it changes something (the management API's caller), in this context
acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("geocloud_acting", default=None)


def operator() -> str:
    """Who runs this command: the principal a server acts for, else GEOCLOUD_OPERATOR, else the login
    name. Recorded with every change."""
    return acting.get() or get_settings().operator or getpass.getuser()
