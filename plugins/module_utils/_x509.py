# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""X.509 checks (base64 -> PEM -> certificate, CA flag, validity window) on the cryptography library.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import traceback

CRYPTOGRAPHY_IMPORT_ERROR = None
try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    x509 = hashes = serialization = None
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

PEM_BEGIN = b'-----BEGIN CERTIFICATE-----'
PEM_END = b'-----END CERTIFICATE-----'
DEFAULT_WARN_DAYS = 30


class X509Error(Exception):
    """A certificate that cannot be used; the message says why."""


def decode_base64_pem(text, what='certificate'):
    """Strict base64 -> PEM bytes of exactly one certificate."""
    if not isinstance(text, (str, bytes)) or not text:
        raise X509Error('%s is empty' % what)
    raw = text.encode('ascii', 'replace') if isinstance(text, str) else text
    raw = b''.join(raw.split())
    try:
        pem = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise X509Error('%s is not valid base64: %s' % (what, exc))
    if PEM_BEGIN not in pem or PEM_END not in pem:
        raise X509Error('%s decodes from base64 but is not a PEM certificate (no %s block)'
                        % (what, PEM_BEGIN.decode()))
    if pem.count(PEM_BEGIN) != 1:
        raise X509Error('%s holds %d PEM certificates; exactly one CA certificate is expected' % (what, pem.count(PEM_BEGIN)))
    return pem


def load_certificate(pem, what='certificate'):
    if not HAS_CRYPTOGRAPHY:
        raise X509Error('the Python library cryptography is required')
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise X509Error('%s is not a parseable X.509 certificate: %s' % (what, exc))


def _utc(value):
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def not_valid_after(cert):
    return _utc(getattr(cert, 'not_valid_after_utc', None) or cert.not_valid_after)


def not_valid_before(cert):
    return _utc(getattr(cert, 'not_valid_before_utc', None) or cert.not_valid_before)


def fingerprint_sha256(cert):
    return ':'.join('%02X' % b for b in bytearray(cert.fingerprint(hashes.SHA256())))


def is_ca(cert):
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.ca)


def certificate_info(cert):
    return dict(
        sha256_fingerprint=fingerprint_sha256(cert),
        not_after=not_valid_after(cert).isoformat(),
        not_before=not_valid_before(cert).isoformat(),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=cert.serial_number,
    )


def check_ca_certificate(cert, now=None, warn_days=DEFAULT_WARN_DAYS, what='certificate'):
    """Validate a CA certificate: CA:TRUE, inside its validity window. Returns a list of warnings."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    subject = cert.subject.rfc4514_string()
    if not is_ca(cert):
        raise X509Error('%s (%s) is not a CA certificate: basicConstraints CA:TRUE is missing' % (what, subject))
    after = not_valid_after(cert)
    before = not_valid_before(cert)
    if after <= now:
        raise X509Error('%s (%s) expired on %s' % (what, subject, after.isoformat()))
    if before > now:
        raise X509Error('%s (%s) is not valid before %s' % (what, subject, before.isoformat()))
    warnings = []
    left = after - now
    if left <= datetime.timedelta(days=warn_days):
        warnings.append('%s (%s) expires on %s, in %d day(s)' % (what, subject, after.isoformat(), left.days))
    return warnings


def load_ca_from_base64(text, now=None, warn_days=DEFAULT_WARN_DAYS, what='certificate'):
    """base64 text -> (PEM text, certificate info dict, warnings); raises X509Error naming the problem."""
    pem = decode_base64_pem(text, what=what)
    cert = load_certificate(pem, what=what)
    warnings = check_ca_certificate(cert, now=now, warn_days=warn_days, what=what)
    # Normalise to the certificate's own PEM encoding (LF line ends, one trailing newline).
    pem_text = cert.public_bytes(serialization.Encoding.PEM).decode('ascii')
    return pem_text, certificate_info(cert), warnings
