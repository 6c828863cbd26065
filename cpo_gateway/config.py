"""Configuration: TOML files read with tomllib into frozen dataclasses.

load_config(path, env) is pure apart from reading the files it names. Every problem is
reported at once, each naming the file, the dotted key, what was expected and what was found.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cpo_gateway import tlsfiles
from cpo_gateway.bridge.catalogue import Catalogue
from cpo_gateway.bridge.settings import CoreSettings, OutboxConfig, SessionsConfig
from cpo_gateway.config_cluster import ClusterConfig, cluster_config
from cpo_gateway.config_storage import StorageConfig, parse_storage
from cpo_gateway.stations import load_stations
from cpo_gateway.tomlcheck import REQUIRED, ConfigError, Table, read_toml


@dataclass(frozen=True)
class GatewayConfig:
    state_dir: Path
    stations_file: Path
    shutdown_grace_s: float = 20.0

    @property
    def database(self) -> Path:
        return self.state_dir / "gateway.db"


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientCertConfig:
    """The `[ocpp.tls]` keys of security profile 3 and of certificate signing.

    `client_ca_file` issues the chargers' client certificates (with any sub-CA);
    `organization` is the subject O every one of them carries (the CPO's name);
    `trusted_proxies` may forward a verified certificate in `client_cert_header` (and the
    sub-CAs the charger sent in `client_chain_header`);
    `signing_ca_cert` / `signing_ca_key` sign the CSRs chargers send (SignCertificate);
    an encrypted key's passphrase comes from `signing_ca_key_passphrase_file` (a systemd
    credential, say) or the environment (SIGNING_KEY_PASSPHRASE_ENV), never the TOML.
    """

    client_ca_file: Path | None = None
    organization: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    client_cert_header: str = "X-Client-Cert"
    client_chain_header: str = "X-Client-Cert-Chain"
    signing_ca_cert: Path | None = None
    signing_ca_key: Path | None = None
    signing_ca_key_passphrase: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OcppConfig:
    host: str = "0.0.0.0"  # noqa: S104 - a central system listens for chargers on the network
    port: int = 9000
    path: str = "/ocpp"
    heartbeat_interval_s: int = 300
    allow_unknown_chargers: bool = False
    ping_interval_s: float = 60.0
    ping_timeout_s: float = 60.0
    max_frame_bytes: int = 65536
    compression: bool = False
    call_timeout_s: float = 30.0
    offline_grace_s: float = 60.0
    open_timeout_s: float = 10.0  # a websocket handshake not complete by then is closed
    # Check every Call payload against the OCA schema of its version (csms/schemas.py). Off
    # only to measure what the check costs (scripts/bench does, for its "before" figure).
    validate_schemas: bool = True
    tls: TlsConfig | None = None
    client_certs: ClientCertConfig = field(default_factory=ClientCertConfig)


@dataclass(frozen=True)
class OioiConfig:
    host: str = "0.0.0.0"  # noqa: S104
    port: int = 8080
    path: str = "/api/v4/request"
    max_body_bytes: int = 64 * 1024 * 1024
    request_deadline_s: float = 10.0
    # Every listener times out idle and slow clients and caps connections per source.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0
    max_connections_per_source: int = 100
    max_connections: int = 1000


@dataclass(frozen=True)
class OcpiConfig:
    """The `[ocpi]` table: the OCPI 2.2.1 listener and who we are to OCPI partners."""

    country_code: str  # ISO 3166 alpha-2
    party_id: str  # 3 characters
    business_name: str
    host: str = "0.0.0.0"  # noqa: S104 - partners reach it over the network
    port: int = 8081
    # The public URL partners reach, e.g. https://cpo.example.com/ocpi/cpo ({base_url}/versions
    # is our versions endpoint). Empty: http://<host>:<bound port>/ocpi/cpo (loopback, tests).
    base_url: str = ""
    max_body_bytes: int = 64 * 1024 * 1024


PROTOCOLS = ("oioi", "ocpi")


@dataclass(frozen=True)
class EmpConfig:
    name: str
    url: str
    api_key: str = field(repr=False)
    inbound_api_key: str = field(repr=False)
    partner_identifier: str
    online_authorization: bool = False
    offline_policy: str = "reject"  # reject | accept
    verify_timeout_s: float = 3.0
    request_timeout_s: float = 30.0
    concurrency: int = 4
    protocol: str = "oioi"  # one of PROTOCOLS: how the gateway speaks with this partner
    # OCPI: the partner's versions URL and the token A it gave us to register with (both
    # empty when the partner registers with us, with a token A `cpo-gateway ocpi token-a` issues)
    versions_url: str = ""
    token_a: str = field(default="", repr=False)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"  # auto | json | console


@dataclass(frozen=True)
class AdminUser:
    name: str
    password_hash: str = field(repr=False)  # scrypt$..., see `cpo-gateway credential`


@dataclass(frozen=True)
class AdminConfig:
    """The operators' listener: console, /metrics, /healthz. Loopback by default."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8090
    users: tuple[AdminUser, ...] = ()
    token: str = field(default="", repr=False)  # from token_file or CPO_GATEWAY_ADMIN_TOKEN
    session_ttl_s: float = 8 * 3600.0
    # Secure cookies are only sent over https: set it when a TLS proxy fronts the console.
    cookie_secure: bool = False
    # Keep /metrics and /healthz on the OIOI port too (scrapers configured before [admin]).
    metrics_on_oioi: bool = True


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewayConfig
    ocpp: OcppConfig
    oioi: OioiConfig
    emps: tuple[EmpConfig, ...]
    sessions: SessionsConfig
    outbox: OutboxConfig
    logging: LoggingConfig
    catalogue: Catalogue
    admin: AdminConfig | None = None  # None: no [admin] table, no admin listener
    ocpi: OcpiConfig | None = None  # None: no [ocpi] table, no OCPI listener
    storage_table: StorageConfig | None = None  # None: SQLite in state_dir
    cluster: ClusterConfig = ClusterConfig()  # off unless the storage is PostgreSQL

    @property
    def storage(self) -> StorageConfig:
        if self.storage_table is not None:
            return self.storage_table
        path = self.gateway.database
        return StorageConfig(f"sqlite://{path}", path)

    def emp(self, name: str) -> EmpConfig | None:
        return next((e for e in self.emps if e.name == name), None)

    @property
    def core_settings(self) -> CoreSettings:
        return CoreSettings(
            offline_grace_s=self.ocpp.offline_grace_s,
            request_deadline_s=self.oioi.request_deadline_s,
            sessions=self.sessions,
            outbox=self.outbox,
        )

    @property
    def oioi_emps(self) -> tuple[EmpConfig, ...]:
        return tuple(e for e in self.emps if e.protocol == "oioi")

    @property
    def ocpi_emps(self) -> tuple[EmpConfig, ...]:
        return tuple(e for e in self.emps if e.protocol == "ocpi")


LOG_LEVELS = ("debug", "info", "warning", "error")


def env_key_name(emp_name: str, which: str) -> str:
    """The environment variable that may hold an EMP key: CPO_GATEWAY_EMP_<NAME>_<WHICH>."""
    slug = re.sub(r"[^A-Za-z0-9]", "_", emp_name).upper()
    return f"CPO_GATEWAY_EMP_{slug}_{which.upper()}"


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read and check the gateway config and the stations file it names."""
    env = os.environ if env is None else env
    path = Path(path)
    data = read_toml(path)
    errors: list[str] = []
    root = Table(path, data, "", errors)
    base = path.parent

    gateway = _gateway(root.table("gateway"), base, env, path, errors)
    ocpp = _ocpp(root.table("ocpp"), base, env, path, errors)
    oioi = _oioi(root.table("oioi"), path, errors)
    emps = tuple(_emp(t, base, env) for t in root.tables("emp"))
    sessions = _sessions(root.table("sessions"), path, errors)
    outbox = _outbox(root.table("outbox"), path, errors)
    logging_ = _logging(root.table("logging"), path, errors)
    admin_table = root.table("admin")
    admin = None if admin_table is None else _admin(admin_table, base, env)
    ocpi_table = root.table("ocpi")
    ocpi = None if ocpi_table is None else _ocpi_table(ocpi_table)
    storage = parse_storage(
        root.table("storage"),
        default_path=gateway.database,
        env=env,
        resolve=lambda value: _resolve(base, value, env),
        errors=errors,
    )
    cluster = cluster_config(root.table("cluster"), storage.url, path, env, errors)
    root.finish()
    _check_emps(emps, path, errors)
    errors.extend(_claim_needs(path, outbox, emps))
    errors.extend(_ocpi_needs(path, ocpi, emps, ocpp.port, oioi.port, admin))
    if ocpp.port == oioi.port and ocpp.port != 0:
        errors.append(
            f"{path}: ocpp.port and oioi.port: expected two different ports, found both {ocpp.port}"
        )

    if admin is not None and admin.enabled and admin.port != 0:
        for name, other in (("ocpp", ocpp.port), ("oioi", oioi.port)):
            if admin.port == other:
                errors.append(
                    f"{path}: admin.port: expected a port other than {name}.port, found {other}"
                )

    catalogue = Catalogue()
    if gateway.stations_file.name:
        try:
            catalogue = load_stations(gateway.stations_file)
        except ConfigError as exc:
            errors.extend(exc.problems)
    errors.extend(_profile_3_needs(path, ocpp, catalogue))
    if errors:
        raise ConfigError(errors)
    return Config(
        path,
        gateway,
        ocpp,
        oioi,
        emps,
        sessions,
        outbox,
        logging_,
        catalogue,
        admin,
        ocpi,
        storage,
        cluster,
    )


def _claim_needs(path: Path, outbox: OutboxConfig, emps: Sequence[EmpConfig]) -> list[str]:
    """A row is sent only in the first half of its claim: the claim must outlast the
    slowest EMP's request by that much, or another node could send it again meanwhile."""
    slowest = max(emps, key=lambda e: e.request_timeout_s, default=None)
    if slowest is None or outbox.claim_s >= 2 * slowest.request_timeout_s:
        return []
    return [
        f"{path}: outbox.claim_s: expected at least twice the longest request_timeout_s "
        f"({2 * slowest.request_timeout_s:g}, [[emp]] {slowest.name!r}), found {outbox.claim_s:g}"
    ]


def _profile_3_needs(path: Path, ocpp: OcppConfig, catalogue: Catalogue) -> list[str]:
    """A charger with security_profile = 3 needs the client CA and the organization."""
    p3 = [c.charge_point_id for c in catalogue.chargers if c.security_profile == 3]
    if not p3:
        return []
    certs, errors = ocpp.client_certs, []
    who = f"charger {p3[0]!r}" + (f" and {len(p3) - 1} more" if len(p3) > 1 else "")
    for key, value in (
        ("client_ca_file", certs.client_ca_file),
        ("organization", certs.organization),
    ):
        if not value:
            errors.append(
                f"{path}: ocpp.tls.{key}: expected a value because {who} uses"
                " security_profile = 3, found nothing (the key is missing)"
            )
    return errors


def _empty(path: Path, name: str, errors: list[str]) -> Table:
    return Table(path, {}, name, errors)


_SYSTEMD_DIRS = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY")


def _unset_dirs(value: str, env: Mapping[str, str]) -> list[str]:
    """The systemd directory variables `value` names that the environment does not set."""
    return [v for v in _SYSTEMD_DIRS if v not in env and ("$" + v in value or "${" + v in value)]


def _resolve(base: Path, value: str, env: Mapping[str, str]) -> Path:
    expanded = value
    for var in _SYSTEMD_DIRS:
        if var in env:
            expanded = expanded.replace("${" + var + "}", env[var]).replace("$" + var, env[var])
    p = Path(expanded).expanduser()
    return p if p.is_absolute() else base / p


def _gateway(
    t: Table | None, base: Path, env: Mapping[str, str], path: Path, errors: list[str]
) -> GatewayConfig:
    t = t or _empty(path, "gateway", errors)
    default_state = env.get("STATE_DIRECTORY") or "./var"
    state_dir = t.string("state_dir", default_state, hint="a directory the gateway may write")
    stations = t.string("stations_file", "", allow_empty=True)
    grace = t.number("shutdown_grace_s", 20.0, lo=0.0, hi=600.0)
    t.finish()
    # The default ./var is relative to the working directory, like any CLI tool's.
    state_path = Path(state_dir) if state_dir == "./var" else _resolve(base, state_dir, env)
    return GatewayConfig(
        state_dir=state_path,
        stations_file=_resolve(base, stations, env) if stations else Path(""),
        shutdown_grace_s=grace,
    )


def _ocpp(
    t: Table | None, base: Path, env: Mapping[str, str], path: Path, errors: list[str]
) -> OcppConfig:
    t = t or _empty(path, "ocpp", errors)
    d = OcppConfig()
    cfg_path = t.string("path", d.path)
    if isinstance(cfg_path, str) and not cfg_path.startswith("/"):
        t.error("path", "a URL path starting with '/'", repr(cfg_path))
    tls_table = t.table("tls")
    tls = None
    certs = ClientCertConfig()
    if tls_table is not None:
        cert = tls_table.string("cert_file", None)
        key = tls_table.string("key_file", None)
        certs = _client_certs(tls_table, base, env)
        if (cert is None) != (key is None) or (cert is None and not certs.trusted_proxies):
            missing = "cert_file" if cert is None else "key_file"
            tls_table.error(
                missing,
                "cert_file and key_file together",
                "nothing (the key is missing)",
                "only a gateway behind trusted_proxies may listen without TLS of its own",
            )
        tls_table.finish()
        if cert and key:
            tls = TlsConfig(_resolve(base, cert, env), _resolve(base, key, env))
            # A pair that cannot serve TLS is a configuration error, not a crash at listen.
            for key_name, expected, found in tlsfiles.check_pair(
                tls.cert_file, tls.key_file, tlsfiles.utc_now()
            ):
                tls_table.error(key_name, expected, found)
    cfg = OcppConfig(
        host=t.string("host", d.host),
        port=t.integer("port", d.port, lo=0, hi=65535),
        path=cfg_path.rstrip("/") if isinstance(cfg_path, str) else d.path,
        heartbeat_interval_s=t.integer(
            "heartbeat_interval_s", d.heartbeat_interval_s, lo=10, hi=86400
        ),
        allow_unknown_chargers=t.boolean("allow_unknown_chargers", d.allow_unknown_chargers),
        ping_interval_s=t.number("ping_interval_s", d.ping_interval_s, lo=1.0, hi=3600.0),
        ping_timeout_s=t.number("ping_timeout_s", d.ping_timeout_s, lo=1.0, hi=3600.0),
        max_frame_bytes=t.integer(
            "max_frame_bytes", d.max_frame_bytes, lo=1024, hi=16 * 1024 * 1024
        ),
        compression=t.boolean("compression", d.compression),
        call_timeout_s=t.number("call_timeout_s", d.call_timeout_s, lo=1.0, hi=600.0),
        offline_grace_s=t.number("offline_grace_s", d.offline_grace_s, lo=0.0, hi=3600.0),
        open_timeout_s=t.number("open_timeout_s", d.open_timeout_s, lo=0.1, hi=600.0),
        validate_schemas=t.boolean("validate_schemas", d.validate_schemas),
        tls=tls,
        client_certs=certs,
    )
    t.finish()
    return cfg


SIGNING_KEY_PASSPHRASE_ENV = "CPO_GATEWAY_SIGNING_CA_KEY_PASSPHRASE"  # noqa: S105 - a name


def _passphrase(t: Table, base: Path, env: Mapping[str, str]) -> tuple[bytes | None, bool]:
    """The signing key's passphrase: a file's first line (spaces kept), else the environment;
    and False when the file named cannot give one (the error is recorded)."""
    key = "signing_ca_key_passphrase_file"
    from_file = t.string(key, None)
    if not from_file:
        value = env.get(SIGNING_KEY_PASSPHRASE_ENV, "")
        return (value.encode() if value else None), True
    unset = _unset_dirs(from_file, env)
    if unset:
        t.error(
            key,
            "a path whose variables are set",
            f"{from_file!r} with {unset[0]} not set",
            "systemd sets it for the service (LoadCredential=); to check by hand, set it: "
            f"{unset[0]}=/etc/cpo-gateway/credentials cpo-gateway check-config -c ...",
        )
        return None, False
    p = _resolve(base, from_file, env)
    try:
        lines = p.read_bytes().splitlines()
    except OSError as exc:
        t.error(key, "a readable file holding the passphrase", f"{p} ({exc.strerror})")
        return None, False
    if not lines or not lines[0]:
        t.error(key, "a file holding the passphrase on its first line", f"{p} is empty")
        return None, False
    return lines[0], True


def _client_certs(t: Table, base: Path, env: Mapping[str, str]) -> ClientCertConfig:
    d = ClientCertConfig()
    paths: dict[str, Path | None] = {}
    for name in ("client_ca_file", "signing_ca_cert", "signing_ca_key"):
        value = t.string(name, None)
        paths[name] = _resolve(base, value, env) if value else None
    proxies = t.value(
        "trusted_proxies",
        list,
        "a list of IP addresses or CIDR blocks",
        [],
        check=lambda v: all(isinstance(x, str) for x in v),
    )
    for entry in proxies:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            t.error("trusted_proxies", "IP addresses or CIDR blocks", repr(entry))
    header = t.string("client_cert_header", d.client_cert_header)
    if isinstance(header, str) and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
        t.error("client_cert_header", "an HTTP header name", repr(header))
    chain_header = t.string("client_chain_header", d.client_chain_header)
    if isinstance(chain_header, str) and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", chain_header):
        t.error("client_chain_header", "an HTTP header name", repr(chain_header))
    passphrase, passphrase_read = _passphrase(t, base, env)
    cfg = ClientCertConfig(
        client_ca_file=paths["client_ca_file"],
        organization=t.string("organization", None),
        trusted_proxies=tuple(str(p).strip() for p in proxies),
        client_cert_header=str(header),
        client_chain_header=str(chain_header),
        signing_ca_cert=paths["signing_ca_cert"],
        signing_ca_key=paths["signing_ca_key"],
        signing_ca_key_passphrase=passphrase,
    )
    for key_name, expected, found in tlsfiles.check_client_certs(
        cfg.client_ca_file,
        cfg.signing_ca_cert,
        cfg.signing_ca_key,
        cfg.organization,
        tlsfiles.utc_now(),
        passphrase=cfg.signing_ca_key_passphrase,
        judge_key=passphrase_read,
    ):
        t.error(key_name, expected, found)
    return cfg


def _oioi(t: Table | None, path: Path, errors: list[str]) -> OioiConfig:
    t = t or _empty(path, "oioi", errors)
    d = OioiConfig()
    cfg_path = t.string("path", d.path)
    if isinstance(cfg_path, str) and not cfg_path.startswith("/"):
        t.error("path", "a URL path starting with '/'", repr(cfg_path))
    cfg = OioiConfig(
        host=t.string("host", d.host),
        port=t.integer("port", d.port, lo=0, hi=65535),
        path=cfg_path,
        max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, lo=1024, hi=1024**3),
        request_deadline_s=t.number("request_deadline_s", d.request_deadline_s, lo=0.5, hi=120.0),
        header_timeout_s=t.number("header_timeout_s", d.header_timeout_s, lo=0.1, hi=600.0),
        body_timeout_s=t.number("body_timeout_s", d.body_timeout_s, lo=0.1, hi=3600.0),
        keepalive_timeout_s=t.number(
            "keepalive_timeout_s", d.keepalive_timeout_s, lo=0.1, hi=3600.0
        ),
        max_connections_per_source=t.integer(
            "max_connections_per_source", d.max_connections_per_source, lo=1, hi=1_000_000
        ),
        max_connections=t.integer("max_connections", d.max_connections, lo=1, hi=1_000_000),
    )
    # The default per-source cap simply yields to a smaller total; a given one must fit.
    given = "max_connections_per_source" in t.data
    if given and cfg.max_connections_per_source > cfg.max_connections:
        t.error(
            "max_connections_per_source",
            f"at most oioi.max_connections ({cfg.max_connections})",
            str(cfg.max_connections_per_source),
        )
    t.finish()
    return cfg


def _secret(
    t: Table,
    key: str,
    emp_name: str,
    base: Path,
    env: Mapping[str, str],
    *,
    required: bool = True,
) -> str:
    inline = t.string(key, None)
    from_file = t.string(f"{key}_file", None)
    env_name = env_key_name(emp_name or "?", key)
    if inline and from_file:
        t.error(key, f"either {key} or {key}_file", "both")
    if from_file:
        unset = _unset_dirs(from_file, env)
        if unset:
            t.error(
                f"{key}_file",
                "a path whose variables are set",
                f"{from_file!r} with {unset[0]} not set",
                "systemd sets it for the service (LoadCredential=); to check by hand, set it: "
                f"{unset[0]}=/etc/cpo-gateway/credentials cpo-gateway check-config -c ...",
            )
            return ""
        p = _resolve(base, from_file, env)
        try:
            value = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            t.error(f"{key}_file", "a readable file holding the key", f"{p} ({exc.strerror})")
            return ""
        if not value:
            t.error(f"{key}_file", "a file holding the key", f"{p} is empty")
        return value
    if inline:
        return str(inline)
    if env.get(env_name):
        return env[env_name].strip()
    if not required:
        return ""
    t.error(
        key,
        "a key",
        "none",
        f'give it as {t.key(key)} = "...", as {t.key(key + "_file")} = "/path" '
        f"(e.g. a systemd credential), or in the environment variable {env_name}",
    )
    return ""


def _emp(t: Table, base: Path, env: Mapping[str, str]) -> EmpConfig:
    protocol = t.string("protocol", "oioi", choices=PROTOCOLS)
    if protocol == "ocpi":
        return _ocpi_emp(t, base, env)
    name = t.string("name")
    url = t.string(
        "url", hint="the EMP's OIOI endpoint, e.g. https://api.example.com/api/v4/request"
    )
    if isinstance(url, str) and not re.match(r"https?://[^/\s]+", url):
        t.error("url", "an http:// or https:// URL", repr(url))
    d = EmpConfig("", "", "", "", "")
    partner = t.string("partner_identifier", hint="the EMP's partner identifier (>= 16 characters)")
    if isinstance(partner, str) and 0 < len(partner) < 16:
        t.error("partner_identifier", "at least 16 characters (OIOI glossary)", repr(partner))
    cfg = EmpConfig(
        name=name or "",
        url=url or "",
        api_key=_secret(t, "api_key", name or "", base, env),
        inbound_api_key=_secret(t, "inbound_api_key", name or "", base, env),
        partner_identifier=partner or "",
        online_authorization=t.boolean("online_authorization", d.online_authorization),
        offline_policy=t.string("offline_policy", d.offline_policy, choices=("reject", "accept")),
        verify_timeout_s=t.number("verify_timeout_s", d.verify_timeout_s, lo=0.1, hi=30.0),
        request_timeout_s=t.number("request_timeout_s", d.request_timeout_s, lo=0.5, hi=300.0),
        concurrency=t.integer("concurrency", d.concurrency, lo=1, hi=64),
        protocol="oioi",
    )
    t.finish()
    return cfg


def _ocpi_emp(t: Table, base: Path, env: Mapping[str, str]) -> EmpConfig:
    """An OCPI partner: its versions URL and token A when we register with it, neither when
    it registers with us."""
    name = t.string("name")
    d = EmpConfig("", "", "", "", "")
    versions_url = t.string(
        "versions_url", "", hint="the partner's OCPI versions endpoint, e.g. https://.../versions"
    )
    if versions_url and not re.match(r"https?://[^/\s]+", str(versions_url)):
        t.error("versions_url", "an http:// or https:// URL", repr(versions_url))
    token_a = _secret(t, "token_a", name or "", base, env, required=False)
    if bool(versions_url) != bool(token_a):
        missing = "token_a" if versions_url else "versions_url"
        t.error(
            missing,
            "versions_url and token_a together (we register with the partner) or neither "
            "(it registers with us)",
            "only one of them",
            "`cpo-gateway ocpi token-a NAME` issues a token A for a partner that registers with us",
        )
    if token_a and len(token_a) > 64:
        t.error("token_a", "a credentials token of at most 64 characters", f"{len(token_a)}")
    cfg = EmpConfig(
        name=name or "",
        url="",
        api_key="",
        inbound_api_key="",
        # what the core files the partner's sessions and CDRs under (default: its name)
        partner_identifier=t.string("partner_identifier", name or ""),
        online_authorization=t.boolean("online_authorization", d.online_authorization),
        offline_policy=t.string("offline_policy", d.offline_policy, choices=("reject", "accept")),
        verify_timeout_s=t.number("verify_timeout_s", d.verify_timeout_s, lo=0.1, hi=30.0),
        request_timeout_s=t.number("request_timeout_s", d.request_timeout_s, lo=0.5, hi=300.0),
        concurrency=t.integer("concurrency", d.concurrency, lo=1, hi=64),
        protocol="ocpi",
        versions_url=str(versions_url or ""),
        token_a=token_a,
    )
    t.finish()
    return cfg


def _ocpi_table(t: Table) -> OcpiConfig:
    d = OcpiConfig("", "", "")
    country = t.string("country_code", hint="ISO 3166 alpha-2, e.g. DE")
    if isinstance(country, str) and not re.fullmatch(r"[A-Z]{2}", country):
        t.error("country_code", "2 upper-case letters (ISO 3166 alpha-2)", repr(country))
    party = t.string("party_id", hint="the 3-character party id, e.g. CPO")
    if isinstance(party, str) and not re.fullmatch(r"[A-Z0-9]{3}", party):
        t.error("party_id", "3 upper-case letters or digits", repr(party))
    name = t.string("business_name")
    if isinstance(name, str) and len(name) > 100:
        t.error("business_name", "at most 100 characters", f"{len(name)}")
    base_url = t.string("base_url", "", allow_empty=True)
    if base_url and not re.fullmatch(r"https?://[^/\s]+(/[^\s?#]*)?", str(base_url)):
        t.error(
            "base_url",
            "an http:// or https:// URL without query or fragment",
            repr(base_url),
            "the public URL partners reach, e.g. https://cpo.example.com/ocpi/cpo",
        )
    cfg = OcpiConfig(
        country_code=str(country or ""),
        party_id=str(party or ""),
        business_name=str(name or ""),
        host=t.string("host", d.host),
        port=t.integer("port", d.port, lo=0, hi=65535),
        base_url=str(base_url or "").rstrip("/"),
        max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, lo=1024, hi=1024**3),
    )
    t.finish()
    return cfg


def _ocpi_needs(
    path: Path,
    ocpi: OcpiConfig | None,
    emps: tuple[EmpConfig, ...],
    ocpp_port: int,
    oioi_port: int,
    admin: AdminConfig | None,
) -> list[str]:
    speaking = [i for i, e in enumerate(emps) if e.protocol == "ocpi"]
    if ocpi is None:
        if not speaking:
            return []
        return [
            f"{path}: ocpi: expected an [ocpi] table (country_code, party_id, business_name) "
            f'because emp[{speaking[0]}] has protocol = "ocpi", found nothing'
        ]
    errors = []
    others = [("ocpp", ocpp_port), ("oioi", oioi_port)]
    if admin is not None and admin.enabled:
        others.append(("admin", admin.port))
    for name, port in others:
        if ocpi.port != 0 and ocpi.port == port:
            errors.append(
                f"{path}: ocpi.port: expected a port other than {name}.port, found {port}"
            )
    return errors


def _check_emps(emps: tuple[EmpConfig, ...], path: Path, errors: list[str]) -> None:
    for attr in ("name", "partner_identifier", "inbound_api_key"):
        seen: dict[str, int] = {}
        for i, emp in enumerate(emps):
            value = getattr(emp, attr)
            if value and value in seen:
                shown = "the same key" if "key" in attr else repr(value)
                errors.append(
                    f"{path}: emp[{i}].{attr}: expected a value unique among [[emp]] tables, "
                    f"found {shown} as in emp[{seen[value]}]"
                )
            seen.setdefault(value, i)


def _sessions(t: Table | None, path: Path, errors: list[str]) -> SessionsConfig:
    t = t or _empty(path, "sessions", errors)
    d = SessionsConfig()
    cfg = SessionsConfig(
        id_tag_strategy=t.string("id_tag_strategy", d.id_tag_strategy, choices=("evco", "hash")),
        pending_start_timeout_s=t.number(
            "pending_start_timeout_s", d.pending_start_timeout_s, lo=5.0, hi=3600.0
        ),
        status_debounce_s=t.number("status_debounce_s", d.status_debounce_s, lo=0.0, hi=600.0),
        cdr_on_start=t.boolean("cdr_on_start", d.cdr_on_start),
        auth_cache_ttl_s=t.number("auth_cache_ttl_s", d.auth_cache_ttl_s, lo=0.0, hi=86400.0),
        id_tag_expiry_s=t.integer("id_tag_expiry_s", d.id_tag_expiry_s, lo=60, hi=30 * 86400),
        ghost_grace_s=t.number("ghost_grace_s", d.ghost_grace_s, lo=0.1, hi=86400.0),
        update_interval_s=t.number("update_interval_s", d.update_interval_s, lo=1.0, hi=86400.0),
    )
    t.finish()
    return cfg


def _outbox(t: Table | None, path: Path, errors: list[str]) -> OutboxConfig:
    t = t or _empty(path, "outbox", errors)
    d = OutboxConfig()
    cfg = OutboxConfig(
        max_backoff_s=t.number("max_backoff_s", d.max_backoff_s, lo=1.0, hi=86400.0),
        base_backoff_s=t.number("base_backoff_s", d.base_backoff_s, lo=0.01, hi=3600.0),
        retry_window_s=t.number("retry_window_s", d.retry_window_s, lo=60.0, hi=30 * 86400.0),
        tick_s=t.number("tick_s", d.tick_s, lo=0.05, hi=60.0),
        batch_size=t.integer("batch_size", d.batch_size, lo=1, hi=10000),
        prune_after_days=t.integer("prune_after_days", d.prune_after_days, lo=1, hi=3650),
        status_resync_h=t.number("status_resync_h", d.status_resync_h, lo=0.1, hi=24 * 30.0),
        claim_s=t.number("claim_s", d.claim_s, lo=2.0, hi=3600.0),
    )
    t.finish()
    return cfg


ADMIN_TOKEN_ENV = "CPO_GATEWAY_ADMIN_TOKEN"  # noqa: S105 - a variable name


def _admin(t: Table, base: Path, env: Mapping[str, str]) -> AdminConfig:
    d = AdminConfig()
    users: list[AdminUser] = []
    for u in t.tables("user"):
        name = u.string("name")
        digest = u.string("password_hash", hint="cpo-gateway credential hash prints one")
        if isinstance(digest, str) and not digest.startswith("scrypt$"):
            u.error("password_hash", "an scrypt hash (scrypt$...)", "something else")
        u.finish()
        if name and digest:
            if any(x.name == name for x in users):
                u.error("name", "a name unique among [[admin.user]] tables", repr(name))
            users.append(AdminUser(str(name), str(digest)))
    token = env.get(ADMIN_TOKEN_ENV, "").strip()
    token_file = t.string("token_file", None)
    if token_file:
        p = _resolve(base, token_file, env)
        try:
            token = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            t.error("token_file", "a readable file holding the token", f"{p} ({exc.strerror})")
    if token and len(token) < 16:
        t.error("token_file", "a token of at least 16 characters", f"{len(token)} characters")
        token = ""
    cfg = AdminConfig(
        enabled=t.boolean("enabled", d.enabled),
        host=t.string("host", d.host),
        port=t.integer("port", d.port, lo=0, hi=65535),
        users=tuple(users),
        token=token,
        session_ttl_s=t.number("session_ttl_s", d.session_ttl_s, lo=60.0, hi=30 * 86400.0),
        cookie_secure=t.boolean("cookie_secure", d.cookie_secure),
        metrics_on_oioi=t.boolean("metrics_on_oioi", d.metrics_on_oioi),
    )
    t.finish()
    return cfg


def _logging(t: Table | None, path: Path, errors: list[str]) -> LoggingConfig:
    t = t or _empty(path, "logging", errors)
    level = t.value(
        "level",
        str,
        "one of " + ", ".join(LOG_LEVELS),
        "info",
        check=lambda v: v.lower() in LOG_LEVELS,
    )
    fmt = t.string("format", "auto", choices=("auto", "json", "console"))
    t.finish()
    return LoggingConfig(level=str(level).lower(), format=fmt)


__all__ = [
    "REQUIRED",
    "AdminConfig",
    "AdminUser",
    "ClientCertConfig",
    "Config",
    "ConfigError",
    "EmpConfig",
    "GatewayConfig",
    "LoggingConfig",
    "OcpiConfig",
    "OcppConfig",
    "OioiConfig",
    "OutboxConfig",
    "SessionsConfig",
    "TlsConfig",
    "env_key_name",
    "load_config",
]
