#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: tls_check
short_description: Check that a database endpoint's TLS certificate verifies against a CA, before a deploy
version_added: 0.1.0
description:
  - Connects to a PostgreSQL, PgBouncer or Redis/Valkey endpoint, performs the TLS handshake and verifies the
    server certificate as libpq (C(sslmode=verify-full)) and node do it - chain to the trusted CAs (O(trust)),
    validity window, host name - and reports the certificate chain and how many days it has left.
  - "Trust follows the applications: PostgreSQL and PgBouncer pools on DigitalOcean are signed by the project's
    private CA (O(trust=ca) with the CA from M(fediops.mastodon.do_database_ca)); DigitalOcean's Valkey/Redis
    certificates are publicly trusted and Mastodon's Redis client has no CA option, so Redis is checked against
    the system trust store (O(trust=system)) unless it is a self-managed Redis with a private CA."
  - For O(protocol=postgres) (PostgreSQL and PgBouncer) it first sends PostgreSQL's 8-byte C(SSLRequest) and
    expects C(S); Redis and Valkey speak TLS from the first byte.
  - Fails with a message naming the problem - expired certificate, unknown CA, hostname mismatch, connection
    refused, timeout - unless O(fail_on_error=false).
  - Warns when a certificate of the chain or the CA expires within O(warn_days) days.
  - Changes nothing; runs the check in check mode too.
author:
  - Fediops maintainers (@fediops)
extends_documentation_fragment:
  - fediops.mastodon.attributes
  - fediops.mastodon.attributes.INFO_MODULE
attributes:
  platform:
    platforms: posix
options:
  host:
    description: Host name (or address) of the endpoint, for example the DigitalOcean cluster's C(connection.host).
    type: str
    required: true
  port:
    description: TCP port (DigitalOcean - V(25060) PostgreSQL, V(25061) PgBouncer pool and Redis/Valkey).
    type: int
    required: true
  protocol:
    description:
      - V(postgres) for PostgreSQL and PgBouncer (C(SSLRequest) first), V(redis) or V(tls) for plain TLS.
    type: str
    choices: [postgres, redis, tls]
    default: tls
  trust:
    description:
      - What the server certificate must chain to.
      - V(ca) - only the CA of O(ca_path) or O(ca_pem), never the system store (PostgreSQL and PgBouncer pools).
      - V(system) - only the system trust store, OpenSSL's default paths (C(SSL_CERT_FILE) and C(SSL_CERT_DIR)
        when set), as Ruby's OpenSSL and Python use it (DigitalOcean's Valkey/Redis); O(ca_path) and O(ca_pem)
        must then be absent.
      - Default - V(ca) when O(ca_path) or O(ca_pem) is given, else V(system).
    type: str
    choices: [ca, system]
  ca_path:
    description:
      - File with the PEM CA certificate(s) to trust, for example the file M(fediops.mastodon.do_database_ca) wrote.
      - Mutually exclusive with O(ca_pem). Required by O(trust=ca) unless O(ca_pem) is given.
    type: path
  ca_pem:
    description: The PEM CA certificate(s) as text. Mutually exclusive with O(ca_path).
    type: str
  server_name:
    description:
      - The name the certificate must be valid for (SNI and host name check). Defaults to O(host).
    type: str
  hostaddr:
    description:
      - Connect to this address instead of resolving O(host), and still verify the certificate against
        O(server_name) (libpq's C(hostaddr)).
    type: str
  timeout:
    description: Seconds allowed for the connection and for the handshake each.
    type: float
    default: 10
  warn_days:
    description: Warn when a certificate expires within this many days.
    type: int
    default: 30
  fail_on_error:
    description: Fail the task when the check fails. With V(false) the result reports RV(verified=false) and RV(error).
    type: bool
    default: true
requirements:
  - cryptography
notes:
  - The check runs where the task runs; delegate it to a host that can reach the endpoint (DigitalOcean's
    private endpoints are only reachable from inside the VPC, for example from a pod or a droplet).
seealso:
  - module: fediops.mastodon.do_database_ca
  - module: fediops.mastodon.do_database_info
'''

EXAMPLES = r'''
- name: The PgBouncer pool presents a certificate from the cluster's CA, for its name
  fediops.mastodon.tls_check:
    host: db-postgresql-fra1-12345-do-user-1-0.b.db.ondigitalocean.com
    port: 25061
    protocol: postgres
    trust: ca
    ca_path: /etc/mastodon/do-ca.pem

- name: DigitalOcean's Valkey, reached through a tunnel on 127.0.0.1, verified against its real name and the system store
  fediops.mastodon.tls_check:
    host: db-valkey-fra1-12345-do-user-1-0.b.db.ondigitalocean.com
    hostaddr: 127.0.0.1
    port: 25061
    protocol: redis
    trust: system
  register: redis_tls

- name: A self-managed Redis with a private CA
  fediops.mastodon.tls_check:
    host: redis.internal.example
    port: 6380
    protocol: redis
    trust: ca
    ca_pem: "{{ config_redis_ca_pem }}"

- name: Report without failing
  fediops.mastodon.tls_check:
    host: db.example.internal
    port: 25060
    protocol: postgres
    ca_path: /etc/mastodon/do-ca.pem
    fail_on_error: false
  register: db_tls

- name: Days left
  ansible.builtin.debug:
    msg: "{{ db_tls.expires_in_days | default('n/a') }} day(s) left, verified={{ db_tls.verified }}"
'''

RETURN = r'''
verified:
  description: Whether the handshake and the certificate verification (chain, validity, host name) succeeded.
  returned: always
  type: bool
error_kind:
  description:
    - What failed, V(null) on success. One of V(connection_refused), V(timeout), V(dns), V(connection), V(no_tls),
      V(protocol), V(handshake), V(ca_invalid), V(expired), V(not_yet_valid), V(unknown_ca), V(hostname_mismatch),
      V(verify).
  returned: always
  type: str
error:
  description: The explanation of the failure (also the task's C(msg) when it fails).
  returned: when the check failed
  type: str
chain:
  description: The certificates the server sent, server certificate first (also when verification failed).
  returned: always
  type: list
  elements: dict
  contains:
    subject:
      description: Subject, RFC 4514.
      type: str
    issuer:
      description: Issuer, RFC 4514.
      type: str
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days until RV(chain[].not_after) (negative when expired).
      type: int
    expired:
      description: Whether the certificate has expired.
      type: bool
    not_yet_valid:
      description: Whether the certificate is not valid yet.
      type: bool
    names:
      description: DNS names and IP addresses of the subjectAltName extension.
      type: list
      elements: str
    sha256_fingerprint:
      description: SHA-256 fingerprint, colon-separated upper-case hex.
      type: str
trust:
  description: The trust used, V(ca) or V(system).
  returned: always
  type: str
ca:
  description: The trusted CA certificate(s) from O(ca_path) or O(ca_pem), same keys as RV(chain); empty with O(trust=system).
  returned: always
  type: list
  elements: dict
expires_in_days:
  description: Days left of the server certificate.
  returned: when the server sent a certificate
  type: int
not_after:
  description: End of validity of the server certificate.
  returned: when the server sent a certificate
  type: str
tls_version:
  description: Negotiated TLS version.
  returned: when the handshake succeeded
  type: str
  sample: TLSv1.3
cipher:
  description: Negotiated cipher suite.
  returned: when the handshake succeeded
  type: str
elapsed:
  description: Seconds the check took.
  returned: always
  type: float
server_name:
  description: The name verified.
  returned: always
  type: str
address:
  description: The address connected to.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fediops.mastodon.plugins.module_utils._tls_check import PROTOCOLS, TRUSTS, check_endpoint
from ansible_collections.fediops.mastodon.plugins.module_utils._x509 import CRYPTOGRAPHY_IMPORT_ERROR, HAS_CRYPTOGRAPHY


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type='str', required=True),
            port=dict(type='int', required=True),
            protocol=dict(type='str', choices=list(PROTOCOLS), default='tls'),
            trust=dict(type='str', choices=list(TRUSTS)),
            ca_path=dict(type='path'),
            ca_pem=dict(type='str'),
            server_name=dict(type='str'),
            hostaddr=dict(type='str'),
            timeout=dict(type='float', default=10),
            warn_days=dict(type='int', default=30),
            fail_on_error=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('ca_path', 'ca_pem')],
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    params = module.params
    if not 0 < params['port'] < 65536:
        module.fail_json(msg='port must be between 1 and 65535, not %d' % params['port'])
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be positive')
    has_ca = bool(params['ca_path'] or params['ca_pem'])
    if params['trust'] == 'ca' and not has_ca:
        module.fail_json(msg='trust=ca needs the CA: give ca_path or ca_pem')
    if params['trust'] == 'system' and has_ca:
        module.fail_json(msg='trust=system checks against the system trust store only: remove ca_path/ca_pem')
    report, error = check_endpoint(host=params['host'], port=params['port'], protocol=params['protocol'],
                                   server_name=params['server_name'], hostaddr=params['hostaddr'],
                                   trust=params['trust'], ca_path=params['ca_path'], ca_pem=params['ca_pem'],
                                   timeout=params['timeout'],
                                   warn_days=params['warn_days'])
    for warning in report.pop('warnings', []):
        module.warn(warning)
    result = dict(changed=False, **report)
    if error:
        result['error'] = error
        if params['fail_on_error']:
            module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
