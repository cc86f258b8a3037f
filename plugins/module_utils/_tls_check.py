# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""TLS preflight of a database endpoint: connect, (PostgreSQL: SSLRequest), handshake, verify, report the chain.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.

Verification is OpenSSL's (the `ssl` module: chain to the trusted CAs, validity window, host name), the same
checks libpq (verify-full) and node's `tls` make; the chain is parsed with `cryptography` for the report.

Trust is chosen per endpoint, as the applications verify it (docs/dev/ARCHITECTURE.md section 7):
- `trust='ca'`: ONLY the given CA (`ca_pem`/`ca_path`), never the system store. PostgreSQL and its PgBouncer
  pools on DigitalOcean: the project's private CA from the API (libpq `PGSSLROOTCERT`, node `NODE_EXTRA_CA_CERTS`).
- `trust='system'`: OpenSSL's default verify paths (`ssl.create_default_context()`, so `SSL_CERT_FILE` and
  `SSL_CERT_DIR` steer it). DigitalOcean's Valkey/Redis: publicly trusted certificates, and Mastodon's Redis
  client takes no CA option (lib/mastodon/redis_configuration.rb:47,60 passes only `{url:, driver:}`).

`preflight(endpoints)` checks several endpoints and returns one result with one message for the operator;
connection failures (refused, timeout, no route, DNS) are reported as "the controller cannot reach it", with the
in-cluster path (plugins/module_utils/_tls_incluster.py) offered instead.
"""

from __future__ import annotations

import datetime
import errno
import socket
import ssl
import struct
import time

from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import (
    DEFAULT_WARN_DAYS, HAS_CRYPTOGRAPHY, certificate_info, not_valid_after, not_valid_before, x509)

# PostgreSQL's SSLRequest: length 8, code 1234 << 16 | 5679.
SSL_REQUEST = struct.pack('!II', 8, 80877103)
PROTOCOLS = ('postgres', 'redis', 'tls')
TRUSTS = ('ca', 'system')
# Failures that mean "nothing answered from here", not "the server is misconfigured".
UNREACHABLE_KINDS = ('connection_refused', 'timeout', 'dns', 'no_route', 'connection')
SYSTEM_STORE = 'the system trust store'

# OpenSSL X509_V_ERR_* codes -> kind.
_VERIFY_KINDS = {
    2: 'unknown_ca',    # unable to get issuer certificate
    10: 'expired',      # certificate has expired
    9: 'not_yet_valid',
    12: 'expired',      # CRL has expired (unlikely)
    18: 'unknown_ca',   # self-signed leaf
    19: 'unknown_ca',   # self-signed certificate in chain
    20: 'unknown_ca',   # unable to get local issuer certificate
    21: 'unknown_ca',   # unable to verify the first certificate
    62: 'hostname_mismatch',
    64: 'hostname_mismatch',  # IP address mismatch
}


class TLSCheckError(Exception):
    """A failed check: kind is one of the KINDS below, the message says what to do about it."""

    KINDS = ('connection_refused', 'timeout', 'dns', 'no_route', 'connection', 'no_tls', 'protocol', 'handshake', 'ca_invalid',
             'expired', 'not_yet_valid', 'unknown_ca', 'hostname_mismatch', 'verify')

    def __init__(self, kind, message):
        super(TLSCheckError, self).__init__(message)
        self.kind = kind
        self.message = message


def classify_verify_error(code, message=''):
    """An OpenSSL verification failure (X509_V_ERR code and text) -> kind."""
    kind = _VERIFY_KINDS.get(code)
    if kind:
        return kind
    text = (message or '').lower()
    if 'hostname mismatch' in text or 'ip address mismatch' in text:
        return 'hostname_mismatch'
    if 'expired' in text:
        return 'expired'
    if 'not yet valid' in text:
        return 'not_yet_valid'
    if 'issuer' in text or 'self-signed' in text or 'self signed' in text:
        return 'unknown_ca'
    return 'verify'


def postgres_reply(reply):
    """Check the one-byte answer to an SSLRequest; raise TLSCheckError unless it is 'S'."""
    if reply == b'S':
        return
    if reply == b'N':
        raise TLSCheckError('no_tls', 'the server refuses TLS (it answered N to the SSLRequest): ssl is off')
    if not reply:
        raise TLSCheckError('protocol', 'the server closed the connection after the SSLRequest: not a PostgreSQL server, '
                                        'or a TLS-only port (use protocol tls/redis)')
    raise TLSCheckError('protocol', 'unexpected answer %r to the SSLRequest: not a PostgreSQL server' % reply[:1])


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _dns_names(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def describe_certificate(cert, now=None):
    """cryptography certificate -> report dict (subject, issuer, validity, days left, names, fingerprint)."""
    now = now or _utcnow()
    info = certificate_info(cert)
    after = not_valid_after(cert)
    info.pop('serial_number', None)
    info.update(names=_dns_names(cert), days_left=int((after - now).total_seconds() / 86400),
                expired=after <= now, not_yet_valid=not_valid_before(cert) > now)
    return info


def load_der_chain(ders):
    return [x509.load_der_x509_certificate(der) for der in ders]


def load_pem_bundle(pem):
    """PEM text with one or more certificates -> list of cryptography certificates."""
    data = pem.encode('ascii') if isinstance(pem, str) else pem
    if hasattr(x509, 'load_pem_x509_certificates'):
        return list(x509.load_pem_x509_certificates(data))
    marker = b'-----END CERTIFICATE-----'
    return [x509.load_pem_x509_certificate(part + marker) for part in data.split(marker) if b'-----BEGIN' in part]


def expiry_warnings(chain, warn_days=DEFAULT_WARN_DAYS, what='server certificate'):
    """Warnings for certificates of a described chain that expire within warn_days (not yet expired)."""
    warnings = []
    for index, info in enumerate(chain):
        if not info['expired'] and info['days_left'] < warn_days:
            label = what if index == 0 else 'chain certificate #%d' % index
            warnings.append('%s (%s) expires on %s, in %d day(s)' % (label, info['subject'], info['not_after'], info['days_left']))
    return warnings


def default_trust(ca_pem=None, ca_path=None):
    """The trust an endpoint gets when none is named: its CA when one is given, else the system store."""
    return 'ca' if (ca_pem or ca_path) else 'system'


def trust_hint(kind, protocol, trust):
    """What to do about an unknown CA, given what the endpoint is and what it was checked against."""
    if kind != 'unknown_ca':
        return ''
    if protocol == 'redis' and trust == 'system':
        return ("DigitalOcean's Valkey certificates are publicly trusted: is this a self-managed Redis with a private "
                "CA? web and Sidekiq verify Redis against the system trust store only (Mastodon's Redis client takes "
                "no CA option): give Redis a publicly trusted certificate")
    if protocol == 'redis':
        return ("DigitalOcean's Valkey certificates are publicly trusted: check Redis against the system trust store "
                "(leave config_redis_ca_pem empty), not against the database CA")
    if protocol == 'postgres' and trust == 'system':
        return ("DigitalOcean's PostgreSQL and its PgBouncer pools use the project's private CA: check them against "
                "the cluster's CA (from the API, or config_db_ca_pem)")
    if trust == 'system':
        return 'is the server\'s CA missing from the system trust store?'
    return 'is the CA of another database cluster installed?'


def failure_message(kind, target, server_name, chain=None, ca=None, detail='', protocol='tls', trust=None):
    """The one-line explanation of a failed check for an operator; it names the trust that was used."""
    chain = chain or []
    leaf = chain[0] if chain else None
    trust = trust or ('ca' if ca else 'system')
    if trust == 'system':
        trusted = SYSTEM_STORE
    else:
        subjects = ', '.join(c['subject'] for c in (ca or []))
        trusted = 'the given CA (%s)' % subjects if subjects else 'the given CA'
    if kind == 'expired':
        expired = next((c for c in chain if c['expired']), leaf)
        if expired:
            return ('%s: certificate expired: %s expired on %s (%d day(s) ago); renew it or check the server clock'
                    % (target, expired['subject'], expired['not_after'], -expired['days_left']))
        return '%s: certificate expired (%s)' % (target, detail)
    if kind == 'not_yet_valid':
        return '%s: certificate not yet valid (%s); check the clocks' % (target, detail)
    if kind == 'unknown_ca':
        issuer = leaf['issuer'] if leaf else 'unknown'
        return ('%s: unknown CA: the server certificate (issuer %s) does not chain to %s; %s (%s)'
                % (target, issuer, trusted, trust_hint(kind, protocol, trust), detail))
    if kind == 'hostname_mismatch':
        names = ', '.join(leaf['names']) if leaf and leaf['names'] else (leaf['subject'] if leaf else 'unknown')
        return ('%s: hostname mismatch: the server certificate is not valid for %s (it is for %s)'
                % (target, server_name, names))
    return '%s: %s' % (target, detail)


def _unverified_chain(tls_sock):
    """DER certificates the server sent (public API in Python 3.13, private before)."""
    getter = getattr(tls_sock, 'get_unverified_chain', None)
    if getter is not None:
        return [der if isinstance(der, bytes) else der.public_bytes(ssl._ssl.ENCODING_DER) for der in getter() or []]  # pylint: disable=protected-access
    sslobj = getattr(tls_sock, '_sslobj', None)
    getter = getattr(sslobj, 'get_unverified_chain', None)
    if getter is not None:
        return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in getter() or []]  # pylint: disable=protected-access
    leaf = tls_sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


class TLSChecker(object):
    """One check: check() returns the report dict, raises TLSCheckError (with .report) on failure."""

    def __init__(self, host, port, protocol='tls', server_name=None, hostaddr=None, ca_path=None, ca_pem=None,
                 timeout=10.0, warn_days=DEFAULT_WARN_DAYS, trust=None):
        if protocol not in PROTOCOLS:
            raise ValueError('protocol must be one of %s' % ', '.join(PROTOCOLS))
        trust = trust or default_trust(ca_pem, ca_path)
        if trust not in TRUSTS:
            raise ValueError('trust must be one of %s, not %r' % (', '.join(TRUSTS), trust))
        if trust == 'ca' and not (ca_pem or ca_path):
            raise ValueError('trust=ca needs the CA: ca_pem or ca_path')
        if trust == 'system' and (ca_pem or ca_path):
            raise ValueError('trust=system uses the system trust store only: do not give ca_pem or ca_path')
        self.trust = trust
        self.host = host
        self.port = int(port)
        self.protocol = protocol
        self.server_name = server_name or host
        self.address = hostaddr or host
        self.ca_path = ca_path
        self.ca_pem = ca_pem
        self.timeout = float(timeout)
        self.warn_days = warn_days
        self.target = '%s:%d (%s, trust %s%s)' % (self.server_name, self.port, protocol,
                                                  'CA' if trust == 'ca' else 'system store',
                                                  ', via %s' % self.address if self.address != self.server_name else '')

    def _context(self, verify):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if self.trust == 'system':
            # OpenSSL's default verify paths (SSL_CERT_FILE / SSL_CERT_DIR when set), as Ruby's OpenSSL uses them.
            return ssl.create_default_context()
        try:
            # Only the given CA: never the system store as well, so a wrong trust choice fails here as it would
            # in libpq (PGSSLROOTCERT) instead of passing by accident.
            if self.ca_path:
                context.load_verify_locations(cafile=self.ca_path)
            else:
                context.load_verify_locations(cadata=self.ca_pem)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TLSCheckError('ca_invalid', '%s: the CA (%s) cannot be loaded: %s'
                                % (self.target, self.ca_path or 'ca_pem', exc))
        return context

    def _connect(self):
        try:
            sock = socket.create_connection((self.address, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            raise TLSCheckError('dns', '%s: cannot resolve %s: %s' % (self.target, self.address, exc))
        except ConnectionRefusedError:
            raise TLSCheckError('connection_refused', '%s: connection refused by %s:%d' % (self.target, self.address, self.port))
        except socket.timeout:
            raise TLSCheckError('timeout', '%s: timeout: no connection to %s:%d within %gs'
                                % (self.target, self.address, self.port, self.timeout))
        except OSError as exc:
            kind = 'no_route' if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else 'connection'
            raise TLSCheckError(kind, '%s: cannot connect to %s:%d: %s' % (self.target, self.address, self.port, exc))
        try:
            if self.protocol == 'postgres':
                sock.sendall(SSL_REQUEST)
                postgres_reply(sock.recv(1))
        except socket.timeout:
            sock.close()
            raise TLSCheckError('timeout', '%s: timeout: no answer to the SSLRequest within %gs' % (self.target, self.timeout))
        except TLSCheckError as exc:
            sock.close()
            raise TLSCheckError(exc.kind, '%s: %s' % (self.target, exc.message))
        except OSError as exc:
            sock.close()
            raise TLSCheckError('protocol', '%s: the server dropped the connection after the SSLRequest (%s): not a '
                                            'PostgreSQL server, or a TLS-only port (use protocol tls/redis)' % (self.target, exc))
        return sock

    def _handshake(self, verify):
        context = self._context(verify)
        sock = self._connect()
        try:
            tls_sock = context.wrap_socket(sock, server_hostname=self.server_name)
        except socket.timeout:
            sock.close()
            raise TLSCheckError('timeout', '%s: timeout: no TLS handshake within %gs' % (self.target, self.timeout))
        except ssl.SSLCertVerificationError:
            sock.close()
            raise
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise TLSCheckError('handshake', '%s: TLS handshake failed: %s' % (self.target, exc))
        try:
            return _unverified_chain(tls_sock), tls_sock.version(), (tls_sock.cipher() or [None])[0]
        finally:
            tls_sock.close()

    def _ca_report(self, now):
        pem = None
        if self.ca_path:
            with open(self.ca_path, 'rb') as handle:
                pem = handle.read()
        elif self.ca_pem:
            pem = self.ca_pem
        if not pem:
            return []
        try:
            return [describe_certificate(cert, now) for cert in load_pem_bundle(pem)]
        except ValueError:
            return []

    def check(self):
        if not HAS_CRYPTOGRAPHY:
            raise TLSCheckError('ca_invalid', 'the Python library cryptography is required')
        start = time.monotonic()
        now = _utcnow()
        report = dict(host=self.host, port=self.port, protocol=self.protocol, server_name=self.server_name,
                      address=self.address, trust=self.trust, verified=False, error_kind=None, chain=[], ca=[], warnings=[])
        error = None
        try:
            ders, version, cipher = self._handshake(verify=True)
            report.update(verified=True, tls_version=version, cipher=cipher)
        except ssl.SSLCertVerificationError as exc:
            code = getattr(exc, 'verify_code', None)
            detail = getattr(exc, 'verify_message', None) or str(exc)
            error = (classify_verify_error(code, detail), detail)
            try:
                ders, version, cipher = self._handshake(verify=False)  # the chain, for the report
                report.update(tls_version=version, cipher=cipher)
            except (TLSCheckError, ssl.SSLError):
                ders = []
        except TLSCheckError as exc:
            report.update(error_kind=exc.kind, elapsed=round(time.monotonic() - start, 3))
            exc.report = report
            raise
        report['chain'] = [describe_certificate(cert, now) for cert in load_der_chain(ders)]
        report['ca'] = self._ca_report(now)
        if report['chain']:
            report['expires_in_days'] = report['chain'][0]['days_left']
            report['not_after'] = report['chain'][0]['not_after']
        report['warnings'] = expiry_warnings(report['chain'], self.warn_days) + expiry_warnings(
            report['ca'], self.warn_days, what='CA certificate')
        report['elapsed'] = round(time.monotonic() - start, 3)
        if error:
            kind, detail = error
            report['error_kind'] = kind
            exc = TLSCheckError(kind, failure_message(kind, self.target, self.server_name, report['chain'], report['ca'],
                                                      detail, protocol=self.protocol, trust=self.trust))
            exc.report = report
            raise exc
        return report


def check_endpoint(**kwargs):
    """(report, error message or None): the report also when the check fails."""
    try:
        return TLSChecker(**kwargs).check(), None
    except TLSCheckError as exc:
        report = getattr(exc, 'report', None) or dict(verified=False, error_kind=exc.kind, chain=[], ca=[], warnings=[])
        report['error_kind'] = exc.kind
        return report, exc.message


ENDPOINT_KEYS = ('name', 'host', 'port', 'protocol', 'trust', 'ca_pem', 'server_name', 'hostaddr')


def validate_endpoints(endpoints):
    """The endpoints of a preflight, checked: a ValueError naming the endpoint and the field, before any connection."""
    if not isinstance(endpoints, (list, tuple)):
        raise ValueError('endpoints must be a list of dicts')
    checked = []
    for index, endpoint in enumerate(endpoints):
        label = 'endpoints[%d]' % index
        if not isinstance(endpoint, dict):
            raise ValueError('%s must be a dict' % label)
        unknown = sorted(set(endpoint) - set(ENDPOINT_KEYS))
        if unknown:
            raise ValueError('%s: unknown key(s) %s (known: %s)' % (label, ', '.join(unknown), ', '.join(ENDPOINT_KEYS)))
        label = '%s (%s)' % (label, endpoint.get('name') or 'no name')
        for key in ('name', 'host'):
            if not endpoint.get(key) or not isinstance(endpoint[key], str):
                raise ValueError('%s: %s is required (a non-empty string)' % (label, key))
        try:
            port = int(endpoint.get('port'))
        except (TypeError, ValueError):
            raise ValueError('%s: port must be an integer, not %r' % (label, endpoint.get('port')))
        if not 0 < port < 65536:
            raise ValueError('%s: port must be between 1 and 65535, not %d' % (label, port))
        protocol = endpoint.get('protocol')
        if protocol not in PROTOCOLS:
            raise ValueError('%s: protocol must be one of %s, not %r' % (label, ', '.join(PROTOCOLS), protocol))
        trust = endpoint.get('trust')
        if trust not in TRUSTS:
            raise ValueError('%s: trust must be one of %s, not %r' % (label, ', '.join(TRUSTS), trust))
        ca_pem = endpoint.get('ca_pem') or ''
        if trust == 'ca' and '-----BEGIN CERTIFICATE-----' not in ca_pem:
            raise ValueError('%s: trust=ca needs ca_pem, the PEM CA certificate(s)' % label)
        if trust == 'system' and ca_pem:
            raise ValueError('%s: trust=system uses the system trust store: ca_pem must be empty' % label)
        checked.append(dict(endpoint, port=port, ca_pem=ca_pem or None))
    names = [e['name'] for e in checked]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ValueError('endpoint names must be unique: %s' % ', '.join(duplicates))
    return checked


def unreachable_message(names, details, where='the controller'):
    """The explanation when nothing answered: DigitalOcean's trusted sources, and the way out."""
    return ('%s cannot reach %s (%s). DigitalOcean trusted sources may admit only the Kubernetes cluster, so the '
            'databases refuse or drop connections from here. Run the same TLS checks where the applications run: '
            'the in-cluster check (a short-lived Job in the namespace, with the streaming image, that verifies each '
            'endpoint with the same trust); or add this machine to the trusted sources; or switch the preflight off '
            '(config_tls_preflight: false).' % (where, ', '.join(names), '; '.join(details)))


def summarize(results, where='the controller', unreachable=None):
    """Per-endpoint results -> (failed, msg): one message naming every failing endpoint and why.

    `unreachable(names, details, where)` words the endpoints that did not answer (default: unreachable_message).
    """
    explain = unreachable or unreachable_message
    silent = [r for r in results if r.get('error_kind') in UNREACHABLE_KINDS]
    others = [r for r in results if r.get('error') and r not in silent]
    parts = ['%s: %s' % (r['name'], r['error']) for r in others]
    if silent:
        parts.append(explain([r['name'] for r in silent], [r['error'] for r in silent], where))
    if not parts:
        return False, None
    return True, 'TLS preflight failed: ' + ' | '.join(parts)


def preflight(endpoints, timeout=10.0, warn_days=DEFAULT_WARN_DAYS):
    """Check each endpoint {name, host, port, protocol, trust, ca_pem[, server_name, hostaddr]} with its trust.

    Returns {'failed': bool, 'msg': str or None, 'unreachable': [names], 'results': [per endpoint: name, host,
    port, protocol, trust, verified, error_kind, error, expires_in_days, warnings, chain, ...]}.
    Bad input raises ValueError naming the endpoint and the field, before any connection.
    """
    results = []
    for endpoint in validate_endpoints(endpoints):
        report, error = check_endpoint(host=endpoint['host'], port=endpoint['port'], protocol=endpoint['protocol'],
                                       trust=endpoint['trust'], ca_pem=endpoint['ca_pem'],
                                       server_name=endpoint.get('server_name'), hostaddr=endpoint.get('hostaddr'),
                                       timeout=timeout, warn_days=warn_days)
        report.update(name=endpoint['name'], error=error, unreachable=report.get('error_kind') in UNREACHABLE_KINDS)
        results.append(report)
    failed, msg = summarize(results)
    return dict(failed=failed, msg=msg, results=results, unreachable=[r['name'] for r in results if r['unreachable']])
