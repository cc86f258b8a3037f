# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the TLS preflight logic: SSLRequest, error classification, chain report, messages; and the
checker against tiny in-process loopback servers."""
from __future__ import annotations

import datetime
import socket
import ssl
import struct
import threading

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils._tls_check import (
    SSL_REQUEST, TLSChecker, TLSCheckError, check_endpoint, classify_verify_error, describe_certificate,
    expiry_warnings, failure_message, load_pem_bundle, postgres_reply)

NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
NAME = 'db-postgresql-fra1-1-do-user-1-0.b.db.ondigitalocean.com'


def make_cert(days_before, days_after, names=(NAME,), now=NOW):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else 'no-names')])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=days_before))
               .not_valid_after(now + datetime.timedelta(days=days_after)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_ssl_request_is_postgres_wire_format():
    assert SSL_REQUEST == b'\x00\x00\x00\x08\x04\xd2\x16\x2f'
    assert struct.unpack('!II', SSL_REQUEST) == (8, (1234 << 16) | 5679)


def test_postgres_reply():
    postgres_reply(b'S')
    with pytest.raises(TLSCheckError) as info:
        postgres_reply(b'N')
    assert info.value.kind == 'no_tls' and 'refuses TLS' in info.value.message
    with pytest.raises(TLSCheckError) as info:
        postgres_reply(b'')
    assert info.value.kind == 'protocol'
    with pytest.raises(TLSCheckError) as info:
        postgres_reply(b'E')
    assert info.value.kind == 'protocol' and 'not a PostgreSQL server' in info.value.message


@pytest.mark.parametrize('code, message, kind', [
    (10, 'certificate has expired', 'expired'),
    (9, 'certificate is not yet valid', 'not_yet_valid'),
    (20, 'unable to get local issuer certificate', 'unknown_ca'),
    (19, 'self-signed certificate in certificate chain', 'unknown_ca'),
    (21, 'unable to verify the first certificate', 'unknown_ca'),
    (18, 'self-signed certificate', 'unknown_ca'),
    (62, "Hostname mismatch, certificate is not valid for 'x'.", 'hostname_mismatch'),
    (None, 'hostname mismatch', 'hostname_mismatch'),
    (None, 'certificate has expired', 'expired'),
    (None, 'something else', 'verify'),
    (99, '', 'verify'),
])
def test_classify_verify_error(code, message, kind):
    assert classify_verify_error(code, message) == kind


def test_describe_certificate():
    info = describe_certificate(make_cert(10, 45), now=NOW)
    assert info['subject'] == 'CN=%s' % NAME and info['issuer'] == info['subject']
    assert info['names'] == [NAME]
    assert info['days_left'] == 45 and not info['expired'] and not info['not_yet_valid']
    assert info['not_after'].startswith('2025-07-16T12:00:00')
    expired = describe_certificate(make_cert(400, -3), now=NOW)
    assert expired['expired'] and expired['days_left'] == -3
    future = describe_certificate(make_cert(-2, 30, names=()), now=NOW)
    assert future['not_yet_valid'] and future['names'] == []


def test_expiry_warnings():
    chain = [describe_certificate(make_cert(1, 10), NOW), describe_certificate(make_cert(1, 400), NOW),
             describe_certificate(make_cert(1, 29), NOW)]
    warnings = expiry_warnings(chain, warn_days=30)
    assert len(warnings) == 2
    assert warnings[0].startswith('server certificate (CN=%s) expires on' % NAME) and 'in 10 day(s)' in warnings[0]
    assert warnings[1].startswith('chain certificate #2')
    assert expiry_warnings([describe_certificate(make_cert(400, -1), NOW)]) == []  # expired: an error, not a warning
    assert expiry_warnings(chain[:1], warn_days=5) == []


def test_failure_messages():
    leaf = describe_certificate(make_cert(400, -2), NOW)
    ca = [dict(subject='CN=Project CA')]
    message = failure_message('expired', 'db:25060 (postgres)', NAME, [leaf], ca)
    assert message.startswith('db:25060 (postgres): certificate expired: CN=%s expired on' % NAME)
    assert '(2 day(s) ago)' in message
    good = describe_certificate(make_cert(1, 100), NOW)
    message = failure_message('unknown_ca', 't', NAME, [good], ca, 'unable to get local issuer certificate')
    assert 'unknown CA' in message and 'issuer CN=%s' % NAME in message and '(CN=Project CA)' in message
    assert 'system CA store' in failure_message('unknown_ca', 't', NAME, [good], [], 'x')
    message = failure_message('hostname_mismatch', 't', 'other.example', [good], ca)
    assert message == 't: hostname mismatch: the server certificate is not valid for other.example (it is for %s)' % NAME
    assert failure_message('handshake', 't', NAME, [], None, 'boom') == 't: boom'


def test_load_pem_bundle():
    one, two = trustme.CA(), trustme.CA()
    certs = load_pem_bundle(one.cert_pem.bytes() + two.cert_pem.bytes())
    assert len(certs) == 2
    assert load_pem_bundle(one.cert_pem.bytes().decode('ascii'))[0].subject == certs[0].subject


def test_protocol_is_checked():
    with pytest.raises(ValueError):
        TLSChecker('h', 1, protocol='smtp')


# -- against loopback servers in threads ------------------------------------------------------------

class Server(object):
    """Accepts connections on 127.0.0.1; postgres=True answers the SSLRequest with `reply` first."""

    def __init__(self, context=None, postgres=False, reply=b'S'):
        self.context = context
        self.postgres = postgres
        self.reply = reply
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn = self.listener.accept()[0]
            except OSError:
                return
            try:
                conn.settimeout(5)
                if self.postgres:
                    assert conn.recv(8) == SSL_REQUEST
                    conn.sendall(self.reply)
                    if self.reply != b'S':
                        continue
                if self.context is not None:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
            except (OSError, ssl.SSLError, AssertionError):
                pass
            finally:
                conn.close()

    def close(self):
        self.listener.close()


@pytest.fixture(scope='module')
def pki():
    ca = trustme.CA()
    other = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(NAME).configure_cert(context)
    return ca, other, context


@pytest.fixture
def server(pki):
    servers = []

    def _make(**kwargs):
        kwargs.setdefault('context', pki[2])
        srv = Server(**kwargs)
        servers.append(srv)
        return srv

    yield _make
    for srv in servers:
        srv.close()


@pytest.mark.parametrize('postgres', [False, True])
def test_check_ok(pki, server, postgres):
    srv = server(postgres=postgres)
    report, error = check_endpoint(host=NAME, hostaddr='127.0.0.1', port=srv.port, protocol='postgres' if postgres else 'tls',
                                   ca_pem=pki[0].cert_pem.bytes().decode('ascii'), timeout=5)
    assert error is None and report['verified'] is True
    assert report['chain'][0]['names'] == [NAME] and report['ca'][0]['subject'] == report['chain'][0]['issuer']
    assert report['address'] == '127.0.0.1' and report['server_name'] == NAME


def test_check_wrong_ca_and_name(pki, server):
    srv = server()
    report, error = check_endpoint(host=NAME, hostaddr='127.0.0.1', port=srv.port,
                                   ca_pem=pki[1].cert_pem.bytes().decode('ascii'), timeout=5)
    assert report['error_kind'] == 'unknown_ca' and 'unknown CA' in error and report['chain']
    report, error = check_endpoint(host='other.example', hostaddr='127.0.0.1', port=srv.port,
                                   ca_pem=pki[0].cert_pem.bytes().decode('ascii'), timeout=5)
    assert report['error_kind'] == 'hostname_mismatch' and 'not valid for other.example' in error


def test_check_postgres_without_ssl(server):
    srv = server(context=None, postgres=True, reply=b'N')
    report, error = check_endpoint(host='127.0.0.1', port=srv.port, protocol='postgres', timeout=5)
    assert report['error_kind'] == 'no_tls' and 'refuses TLS' in error


def test_check_refused_and_bad_ca(tmp_path):
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    report, error = check_endpoint(host='127.0.0.1', port=port, timeout=2)
    assert report['error_kind'] == 'connection_refused' and 'connection refused by 127.0.0.1:%d' % port in error
    bad = tmp_path / 'ca.pem'
    bad.write_text('not a certificate\n')
    report, error = check_endpoint(host='127.0.0.1', port=port, ca_path=str(bad), timeout=2)
    assert report['error_kind'] == 'ca_invalid' and 'cannot be loaded' in error


def test_check_timeout():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    try:
        report, error = check_endpoint(host='127.0.0.1', port=listener.getsockname()[1], protocol='postgres', timeout=0.3)
    finally:
        listener.close()
    assert report['error_kind'] == 'timeout' and 'timeout' in error
