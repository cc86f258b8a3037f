# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""TLS preflight of a database endpoint: connect, (PostgreSQL: SSLRequest), handshake, verify, report the chain.

This is a PRIVATE API of the fediops.mastodon collection: it may change or go away without notice
in any release. Do not use it from other collections.

Verification is OpenSSL's (the `ssl` module: chain to the given CA, validity window, host name), the same
checks libpq (verify-full) and node's `tls` make; the chain is parsed with `cryptography` for the report.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import time

from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import (
    DEFAULT_WARN_DAYS, HAS_CRYPTOGRAPHY, certificate_info, not_valid_after, not_valid_before, x509)

# PostgreSQL's SSLRequest: length 8, code 1234 << 16 | 5679.
SSL_REQUEST = struct.pack('!II', 8, 80877103)
PROTOCOLS = ('postgres', 'redis', 'tls')

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

    KINDS = ('connection_refused', 'timeout', 'dns', 'connection', 'no_tls', 'protocol', 'handshake', 'ca_invalid',
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


def failure_message(kind, target, server_name, chain=None, ca=None, detail=''):
    """The one-line explanation of a failed check for an operator."""
    chain = chain or []
    leaf = chain[0] if chain else None
    ca_subjects = ', '.join(c['subject'] for c in (ca or [])) or 'the system CA store'
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
        return ('%s: unknown CA: the server certificate (issuer %s) does not chain to the trusted CA (%s); '
                'is the CA of another database cluster installed? (%s)' % (target, issuer, ca_subjects, detail))
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
                 timeout=10.0, warn_days=DEFAULT_WARN_DAYS):
        if protocol not in PROTOCOLS:
            raise ValueError('protocol must be one of %s' % ', '.join(PROTOCOLS))
        self.host = host
        self.port = int(port)
        self.protocol = protocol
        self.server_name = server_name or host
        self.address = hostaddr or host
        self.ca_path = ca_path
        self.ca_pem = ca_pem
        self.timeout = float(timeout)
        self.warn_days = warn_days
        self.target = '%s:%d (%s%s)' % (self.server_name, self.port, protocol,
                                        ', via %s' % self.address if self.address != self.server_name else '')

    def _context(self, verify):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            if self.ca_path:
                context.load_verify_locations(cafile=self.ca_path)
            elif self.ca_pem:
                context.load_verify_locations(cadata=self.ca_pem)
            else:
                context.load_default_certs()
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
            raise TLSCheckError('connection', '%s: cannot connect to %s:%d: %s' % (self.target, self.address, self.port, exc))
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
                      address=self.address, verified=False, error_kind=None, chain=[], ca=[], warnings=[])
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
            exc = TLSCheckError(kind, failure_message(kind, self.target, self.server_name, report['chain'], report['ca'], detail))
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
