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
    expiry_warnings, failure_message, load_pem_bundle, postgres_reply, preflight, summarize, trust_hint,
    validate_endpoints)

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
    assert 'does not chain to the system trust store' in failure_message('unknown_ca', 't', NAME, [good], [], 'x')
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


# -- trust per endpoint ---------------------------------------------------------------------------------

@pytest.mark.parametrize('protocol, trust, words', [
    ('redis', 'system', ["Valkey certificates are publicly trusted", 'self-managed Redis with a private CA',
                         'publicly trusted certificate']),
    ('redis', 'ca', ['publicly trusted', 'check Redis against the system trust store']),
    ('postgres', 'system', ["project's private CA", 'config_db_ca_pem']),
    ('postgres', 'ca', ['CA of another database cluster']),
])
def test_trust_hints(protocol, trust, words):
    hint = trust_hint('unknown_ca', protocol, trust)
    for word in words:
        assert word in hint
    assert trust_hint('hostname_mismatch', protocol, trust) == ''


def test_failure_message_names_the_trust():
    good = describe_certificate(make_cert(1, 100), NOW)
    message = failure_message('unknown_ca', 'r', NAME, [good], [], 'x', protocol='redis', trust='system')
    assert 'does not chain to the system trust store' in message and 'publicly trusted certificate' in message
    message = failure_message('unknown_ca', 'r', NAME, [good], [dict(subject='CN=Project CA')], 'x', protocol='redis',
                              trust='ca')
    assert 'does not chain to the given CA (CN=Project CA)' in message and 'not against the database CA' in message


@pytest.mark.parametrize('kwargs, message', [
    (dict(trust='ca'), 'trust=ca needs the CA'),
    (dict(trust='system', ca_pem='x'), 'trust=system uses the system trust store only'),
    (dict(trust='public'), 'trust must be one of ca, system'),
])
def test_trust_is_checked(kwargs, message):
    with pytest.raises(ValueError) as info:
        TLSChecker('h', 1, **kwargs)
    assert message in str(info.value)


def test_trust_default_follows_the_ca():
    assert TLSChecker('h', 1).trust == 'system'
    assert TLSChecker('h', 1, ca_pem='-----BEGIN CERTIFICATE-----').trust == 'ca'


def test_trust_ca_ignores_the_system_store(pki, server, tmp_path, monkeypatch):
    """trust=ca loads only the given CA: a certificate the system store would accept still fails."""
    store = tmp_path / 'store.pem'
    store.write_bytes(pki[0].cert_pem.bytes())
    monkeypatch.setenv('SSL_CERT_FILE', str(store))
    srv = server()
    report, error = check_endpoint(host=NAME, hostaddr='127.0.0.1', port=srv.port, trust='ca',
                                   ca_pem=pki[1].cert_pem.bytes().decode('ascii'), timeout=5)
    assert report['error_kind'] == 'unknown_ca' and report['trust'] == 'ca', error


def test_trust_system_uses_ssl_cert_file(pki, server, tmp_path, monkeypatch):
    """trust=system is OpenSSL's default store, so SSL_CERT_FILE decides (as for Ruby's OpenSSL)."""
    srv = server()
    store = tmp_path / 'store.pem'
    store.write_bytes(pki[0].cert_pem.bytes())
    monkeypatch.setenv('SSL_CERT_FILE', str(store))
    report, error = check_endpoint(host=NAME, hostaddr='127.0.0.1', port=srv.port, protocol='redis', trust='system',
                                   timeout=5)
    assert error is None and report['verified'] and report['trust'] == 'system' and report['ca'] == []
    store.write_bytes(pki[1].cert_pem.bytes())
    report, error = check_endpoint(host=NAME, hostaddr='127.0.0.1', port=srv.port, protocol='redis', trust='system',
                                   timeout=5)
    assert report['error_kind'] == 'unknown_ca'
    assert 'trust system store' in error and 'does not chain to the system trust store' in error
    assert 'publicly trusted certificate' in error


# -- preflight -------------------------------------------------------------------------------------------

CA_PEM = trustme.CA().cert_pem.bytes().decode('ascii')


def _endpoint(**extra):
    endpoint = dict(name='database', host=NAME, port=25060, protocol='postgres', trust='ca', ca_pem=CA_PEM)
    endpoint.update(extra)
    return endpoint


@pytest.mark.parametrize('endpoint, message', [
    (_endpoint(trust=None), 'endpoints[0] (database): trust must be one of ca, system'),
    (_endpoint(trust='ca', ca_pem=''), 'endpoints[0] (database): trust=ca needs ca_pem'),
    (_endpoint(trust='system'), 'endpoints[0] (database): trust=system uses the system trust store: ca_pem must be empty'),
    (_endpoint(port='x'), 'endpoints[0] (database): port must be an integer'),
    (_endpoint(port=70000), 'port must be between 1 and 65535'),
    (_endpoint(protocol='smtp'), 'protocol must be one of postgres, redis, tls'),
    (_endpoint(host=''), 'endpoints[0] (database): host is required'),
    (_endpoint(name=''), 'endpoints[0] (no name): name is required'),
    (_endpoint(ca_file='/x'), 'endpoints[0]: unknown key(s) ca_file'),
])
def test_validate_endpoints_names_the_field(endpoint, message):
    with pytest.raises(ValueError) as info:
        validate_endpoints([endpoint])
    assert message in str(info.value)


def test_validate_endpoints_unique_names():
    with pytest.raises(ValueError) as info:
        validate_endpoints([_endpoint(), _endpoint()])
    assert 'endpoint names must be unique: database' in str(info.value)
    assert validate_endpoints([_endpoint(port='25060')])[0]['port'] == 25060


def test_summarize():
    assert summarize([dict(name='a', error=None, error_kind=None)]) == (False, None)
    failed, msg = summarize([dict(name='database', error='db: unknown CA', error_kind='unknown_ca'),
                             dict(name='redis', error='r: connection refused', error_kind='connection_refused'),
                             dict(name='pool', error='p: timeout', error_kind='timeout')])
    assert failed and msg.startswith('TLS preflight failed: database: db: unknown CA | the controller cannot reach redis, pool')
    assert 'DigitalOcean trusted sources may admit only the Kubernetes cluster' in msg
    assert 'in-cluster check' in msg and 'config_tls_preflight: false' in msg


def _closed_port():
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_preflight_each_endpoint_with_its_trust(pki, server, tmp_path, monkeypatch):
    store = tmp_path / 'store.pem'
    store.write_bytes(pki[1].cert_pem.bytes())  # the "public" CA: here the other CA of the fixture
    monkeypatch.setenv('SSL_CERT_FILE', str(store))
    public = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki[1].issue_cert('redis.example').configure_cert(public)
    database, redis = server(postgres=True), server(context=public)
    db_ca = pki[0].cert_pem.bytes().decode('ascii')
    endpoints = [dict(name='database', host=NAME, hostaddr='127.0.0.1', port=database.port, protocol='postgres',
                      trust='ca', ca_pem=db_ca),
                 dict(name='redis', host='redis.example', hostaddr='127.0.0.1', port=redis.port, protocol='redis',
                      trust='system')]
    result = preflight(endpoints, timeout=5)
    assert result['failed'] is False and result['msg'] is None, result['msg']
    assert [(r['name'], r['verified'], r['trust']) for r in result['results']] == [('database', True, 'ca'),
                                                                                   ('redis', True, 'system')]
    # Swapped trusts: both fail, each naming what it was checked against.
    endpoints[0].update(trust='system', ca_pem=None)
    endpoints[1].update(trust='ca', ca_pem=db_ca)
    result = preflight(endpoints, timeout=5)
    assert result['failed'] and [r['error_kind'] for r in result['results']] == ['unknown_ca', 'unknown_ca']
    assert "database: %s:%d (postgres, trust system store, via 127.0.0.1): unknown CA" % (NAME, database.port) in result['msg']
    assert 'redis: redis.example' in result['msg'] and 'does not chain to the given CA' in result['msg']


def test_preflight_unreachable(monkeypatch):
    port = _closed_port()
    endpoints = [dict(name='database', host='127.0.0.1', port=port, protocol='postgres', trust='ca', ca_pem=CA_PEM)]
    result = preflight(endpoints, timeout=2)
    assert result['failed'] and result['unreachable'] == ['database']
    assert result['results'][0]['unreachable'] is True
    assert 'the controller cannot reach database (' in result['msg'] and 'connection refused' in result['msg']
    assert 'DigitalOcean trusted sources may admit only the Kubernetes cluster' in result['msg']


@pytest.mark.parametrize('error, kind', [
    (socket.gaierror(-2, 'Name or service not known'), 'dns'),
    (socket.timeout('timed out'), 'timeout'),
    (OSError(113, 'No route to host'), 'no_route'),
    (OSError(101, 'Network is unreachable'), 'no_route'),
    (ConnectionRefusedError(111, 'refused'), 'connection_refused'),
])
def test_connect_failures_are_classified(monkeypatch, error, kind):
    def fail(*_args, **_kwargs):
        raise error
    monkeypatch.setattr(socket, 'create_connection', fail)
    result = preflight([dict(name='pool', host='db.example', port=25061, protocol='postgres', trust='ca', ca_pem=CA_PEM)],
                       timeout=1)
    assert result['results'][0]['error_kind'] == kind and result['unreachable'] == ['pool']
    assert 'the controller cannot reach pool' in result['msg']
