"""The lab cluster's PKI: a CA, the API server's serving certificate, client certificates, the
ServiceAccount signing key, and kubeconfig files that use them.

Keys are EC P-256 (fast to generate, accepted by kube-apiserver for TLS and ES256 tokens).
Everything is written with mode 0600 under the cluster's state directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A throw-away certificate authority for one lab cluster."""

    def __init__(self, directory: Path, name: str = "kpdoctor-lab-ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        self.name = _name(name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name).issuer_name(self.name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.cert_path = _write(self.dir / "ca.crt", self.cert.public_bytes(serialization.Encoding.PEM))
        _write(self.dir / "ca.key", _key_pem(self.key))

    def issue(self, stem: str, cn: str, *, orgs: tuple[str, ...] = (), server_names: tuple[str, ...] = (),
              server_ips: tuple[str, ...] = ()) -> CertPair:  # fmt: skip
        key = _key()
        now = dt.datetime.now(dt.UTC)
        server = bool(server_names or server_ips)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs)).issuer_name(self.name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )  # fmt: skip
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return CertPair(_write(self.dir / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                        _write(self.dir / f"{stem}.key", _key_pem(key)))  # fmt: skip


def service_account_keys(directory: Path) -> CertPair:
    """The token signing key pair: (public key PEM as `cert`, private key PEM as `key`)."""
    key = _key()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return CertPair(_write(directory / "sa.pub", pub), _write(directory / "sa.key", _key_pem(key)))


def write_kubeconfig(path: Path, server: str, ca: Path, *, user: str, client: CertPair | None = None,
                     token: str | None = None) -> Path:  # fmt: skip
    """A one-cluster, one-user kubeconfig (client certificate or bearer token)."""
    auth: dict[str, str] = {}
    if client is not None:
        auth = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token is not None:
        auth = {"token": token}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    }
    return _write(path, yaml.safe_dump(doc, sort_keys=False).encode())
