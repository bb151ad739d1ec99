"""TLS certificates for the coordinator and ECDSA keys for the sites, as Flower's deployment runtime takes them.

A real study's coordinator has a certificate from the hospital group's CA (or a public one) for its host name, and
each site makes its own key pair and sends only the public key to the coordinator's operator, who registers it
(`flwr supernode register`): a site process without a registered key is refused. For a trial on one machine and
for the tests, `make_trial_security` creates a throwaway CA, a server certificate for the loopback addresses and
one key pair per site. Private keys are written owner-only.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Security:
    """The files a TLS federation with site authentication needs: the CA certificate every site trusts, the coordinator's
    certificate and key, and each site's private key (its public key beside it, `<key>.pub`)."""

    ca_certificate: Path
    certificate: Path
    private_key: Path
    site_keys: dict[str, Path] = field(default_factory=dict)

    def public_key(self, site: str) -> Path:
        """Return the OpenSSH public key file of a site (what the coordinator registers)."""
        return self.site_keys[site].with_name(self.site_keys[site].name + ".pub")


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative_names(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certificates(folder: str | Path, hosts: tuple[str, ...] = LOOPBACK_NAMES, days: int = 30) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for `hosts` (ECDSA P-256) under `folder`; return (ca, certificate, key)."""
    folder = Path(folder)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("crossmed trial CA")).issuer_name(_name("crossmed trial CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(_alternative_names(hosts), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.crt", folder / "coordinator.crt", folder / "coordinator.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(paths[2], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def make_site_key(folder: str | Path, site: str) -> Path:
    """Write a site's ECDSA P-384 key pair in OpenSSH format (`<site>.key`, `<site>.key.pub`); return the private key's path."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = Path(folder) / f"{site}.key"
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private.with_name(private.name + ".pub").write_bytes(public + f" crossmed-site-{site}\n".encode())
    return private


def make_trial_security(folder: str | Path, sites: tuple[str, ...]) -> Security:
    """Return a CA, a loopback certificate and one key pair per site, written under `folder` (a trial on one machine)."""
    ca, certificate, key = make_certificates(Path(folder) / "tls")
    return Security(ca, certificate, key, {site: make_site_key(Path(folder) / "site_keys", site) for site in sites})
