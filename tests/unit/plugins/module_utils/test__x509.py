# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the X.509 checks."""
from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import X509Error, load_ca_from_base64

NOW = datetime.datetime(2030, 6, 1, tzinfo=datetime.timezone.utc)


def make_cert(ca=True, days_before=10, days_after=365, constraints=True):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'unit CA'), x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Test, Inc')])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=days_before))
               .not_valid_after(NOW + datetime.timedelta(days=days_after)))
    if constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(pem).decode(), pem.decode(), cert


def test_valid_ca():
    encoded, pem, cert = make_cert()
    out_pem, info, warnings = load_ca_from_base64(encoded, now=NOW)
    assert out_pem == pem and warnings == []
    assert info['subject'] == 'O=Test\\, Inc,CN=unit CA'
    assert info['sha256_fingerprint'] == cert.fingerprint(hashes.SHA256()).hex(':').upper()
    assert info['not_after'] == (NOW + datetime.timedelta(days=365)).isoformat()


def test_base64_with_line_breaks_accepted():
    encoded = make_cert()[0]
    wrapped = '\n'.join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    assert load_ca_from_base64(wrapped, now=NOW)[2] == []


def test_expiring_warns():
    warnings = load_ca_from_base64(make_cert(days_after=12)[0], now=NOW)[2]
    assert len(warnings) == 1 and 'in 12 day' in warnings[0]


@pytest.mark.parametrize('kwargs,text', [
    (dict(ca=False), 'not a CA certificate'),
    (dict(constraints=False), 'not a CA certificate'),
    (dict(days_before=400, days_after=-1), 'expired on'),
    (dict(days_before=-5), 'not valid before'),
])
def test_rejected_certificates(kwargs, text):
    with pytest.raises(X509Error, match=text):
        load_ca_from_base64(make_cert(**kwargs)[0], now=NOW)


@pytest.mark.parametrize('value,text', [
    ('', 'is empty'),
    ('not base64 !!', 'not valid base64'),
    (base64.b64encode(b'hello').decode(), 'not a PEM certificate'),
    (base64.b64encode(b'-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n').decode(), 'not a parseable X.509'),
])
def test_bad_encodings(value, text):
    with pytest.raises(X509Error, match=text):
        load_ca_from_base64(value, now=NOW)


def test_two_certificates_rejected():
    pem = make_cert()[1] + make_cert()[1]
    with pytest.raises(X509Error, match='holds 2 PEM certificates'):
        load_ca_from_base64(base64.b64encode(pem.encode()).decode(), now=NOW)
