"""A throw-away self-signed TLS certificate for the emulator's HTTPS management endpoint.

``ServiceBusAdministrationClient`` always speaks ``https://`` (even with
``UseDevelopmentEmulator=true``), so the emulator serves TLS with a certificate made at start-up
for ``127.0.0.1`` and ``localhost``; clients trust it with ``connection_verify=<cert file>``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertificateFiles:
    """PEM files of a self-signed certificate; ``cert_file`` is also the CA file clients trust."""

    cert_file: Path
    key_file: Path


def write_self_signed_certificate(
    directory: Path,
    *,
    common_name: str = "floworch-servicebus-emulator",
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    valid_for: timedelta = timedelta(days=2),
) -> CertificateFiles:
    """Create a key and a self-signed certificate for ``hosts`` in ``directory``.

    IP addresses become ``IP`` subject alternative names, everything else ``DNS`` names. The
    certificate is also marked as a CA so that it can be passed as the client's trust anchor.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    # Backdate a little so a client whose clock is slightly behind still accepts it.
    now = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / "emulator-cert.pem"
    key_file = directory / "emulator-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return CertificateFiles(cert_file=cert_file, key_file=key_file)
