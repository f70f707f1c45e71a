"""Certificates of the federation: a development authority, node certificates, and
the TLS credentials built from them.

Identity is the certificate's common name, also written as a DNS name (clients
check a peer's certificate against the identity they expect, whatever address
they dial). Keys are EC P-256, written 0600 in a 0700 folder under the node's
state directory, and refused inside the repository unless git ignores the path,
so that no key ever lands in a commit. Real nodes get their certificates from
the federation's authority; this module only makes development ones.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.policy.federation import CODE, CertificatePaths, certificate_paths
from services.runtime.errors import CiteplusError
from services.runtime.paths import REPO_ROOT

CA_DAYS = 3650
NODE_DAYS = 397
LOCAL_NAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Issued:
    identity: str
    cert: Path
    key: Path
    created: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the first byte (no window where a key is 0644)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, mode)
    temporary.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_outside_git(directory: Path) -> None:
    """Refuse to write keys where ``git add`` would pick them up."""
    resolved = directory.resolve()
    try:
        resolved.relative_to(REPO_ROOT)
    except ValueError:
        return
    probe = resolved / "probe.key"
    ignored = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(probe)],
        capture_output=True,
        check=False,
    )
    if ignored.returncode == 1:
        raise CiteplusError(
            f"{directory} is inside the repository and not ignored by git: keys must never "
            "be committed; use the node's state directory (var/, the default) or --dir elsewhere"
        )


def create_authority(directory: Path, *, name: str = "Cité+ development federation CA") -> None:
    """A self-signed authority: ca.pem (public) and ca.key (0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cité+ (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _write(directory / "ca.key", _key_pem(key), 0o600)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load_authority(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise CiteplusError(
            f"no development authority in {directory} ({exc.filename} missing): "
            "run `citeplus certs`"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CiteplusError(f"{directory / 'ca.key'}: expected an EC private key")
    return cert, key


# What a node certificate may do: sign TLS handshakes (ECDHE) as server and client.
_NODE_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _alt_names(
    identity: str, dns_names: tuple[str, ...], addresses: tuple[str, ...]
) -> list[x509.GeneralName]:
    """The identity first (what peers check), then the local names and addresses a
    node is dialled on in development, then the ones asked for."""
    names: list[x509.GeneralName] = [
        x509.DNSName(n) for n in dict.fromkeys((identity, *LOCAL_NAMES, *dns_names))
    ]
    names += [
        x509.IPAddress(ipaddress.ip_address(a))
        for a in dict.fromkeys((*LOCAL_ADDRESSES, *addresses))
    ]
    return names


def _node_certificate(
    identity: str,
    public_key: ec.EllipticCurvePublicKey,
    names: list[x509.GeneralName],
    validity: tuple[dt.datetime, dt.datetime],
    authority: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> x509.Certificate:
    """A leaf certificate for ``identity`` signed by ``authority`` (its cert and key)."""
    ca_cert, ca_key = authority
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cité+ federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, identity),
        ]
    )
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(_NODE_KEY_USAGE, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue(
    directory: Path,
    identity: str,
    *,
    dns_names: tuple[str, ...] = (),
    addresses: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    authority: Path | None = None,
) -> CertificatePaths:
    """A certificate for ``identity`` (server and client use) signed by the authority in
    ``authority`` (default: ``directory``), written as <identity>.pem / <identity>.key."""
    if not CODE.match(identity):
        raise CiteplusError(f"an identity is a lowercase code (city, syndicate), not {identity!r}")
    ca = load_authority(authority or directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    validity = (
        not_before or now - dt.timedelta(minutes=5),
        not_after or now + dt.timedelta(days=NODE_DAYS),
    )
    names = _alt_names(identity, dns_names, addresses)
    cert = _node_certificate(identity, key.public_key(), names, validity, ca)
    paths = certificate_paths(directory, identity)
    directory.mkdir(parents=True, exist_ok=True)
    _write(paths.key, _key_pem(key), 0o600)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if authority and authority != directory:
        _write(paths.ca, (authority / "ca.pem").read_bytes(), 0o644)
    return paths


def ensure_dev_certificates(
    directory: Path,
    identities: list[str],
    *,
    dns_names: tuple[str, ...] = (),
    addresses: tuple[str, ...] = (),
    renew: bool = False,
) -> tuple[bool, list[Issued]]:
    """The authority (created once) and a valid certificate per identity.

    Existing certificates are kept unless ``renew`` or they expire within 30 days.
    Returns whether the authority was created, and what each identity has.
    """
    ensure_outside_git(directory)
    created_ca = not (directory / "ca.pem").exists()
    if created_ca:
        create_authority(directory)
    issued = []
    for identity in dict.fromkeys(identities):
        paths = certificate_paths(directory, identity)
        fresh = renew or created_ca or not paths.cert.exists() or not paths.key.exists()
        if not fresh:
            current = x509.load_pem_x509_certificate(paths.cert.read_bytes())
            fresh = current.not_valid_after_utc < _now() + dt.timedelta(days=30)
        if fresh:
            issue(directory, identity, dns_names=dns_names, addresses=addresses)
        issued.append(Issued(identity, paths.cert, paths.key, fresh))
    return created_ca, issued


def identity_of(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


# -- TLS credentials ------------------------------------------------------------------


def _read(paths: CertificatePaths) -> tuple[bytes, bytes, bytes]:
    missing = paths.missing()
    if missing:
        raise CiteplusError(
            "federation certificates missing: "
            + ", ".join(str(p) for p in missing)
            + " (development: `citeplus certs`; production: the federation's authority)"
        )
    return paths.ca.read_bytes(), paths.cert.read_bytes(), paths.key.read_bytes()


def server_credentials(paths: CertificatePaths) -> grpc.ServerCredentials:
    """Mutual TLS: a client must present a certificate of the configured authority.

    The files are read again whenever they change, so rotating a node's certificate
    (or the authority bundle) needs no restart.
    """
    ca, cert, key = _read(paths)
    initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
    seen = {"stamp": _stamp(paths)}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        stamp = _stamp(paths)
        if stamp == seen["stamp"]:
            return None
        try:
            ca, cert, key = _read(paths)
        except CiteplusError:
            return None  # a rotation in progress: keep serving with the current files
        seen["stamp"] = stamp
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=True)


def _stamp(paths: CertificatePaths) -> tuple[float, ...]:
    return tuple(
        p.stat().st_mtime if p.exists() else 0.0 for p in (paths.ca, paths.cert, paths.key)
    )


def channel_credentials(paths: CertificatePaths) -> grpc.ChannelCredentials:
    ca, cert, key = _read(paths)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
