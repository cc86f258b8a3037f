# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TLS end to end with DigitalOcean's two trusts: the CA fetched by do_database_ca and the .env.production written
by mastodon_env, read by the real clients of Mastodon's three components, against real PostgreSQL and PgBouncer
(project CA) and Redis (public test CA, known only to the clients' system store).

How the clients connect (exactly Mastodon's options, see check_ruby.rb and check_node.js):
- ruby (Rails, Sidekiq): libpq with sslmode from DB_SSLMODE (config/database.yml:7) and the CA from PGSSLROOTCERT;
  redis-rb built with only `{url:, driver: :ruby}` (lib/mastodon/redis_configuration.rb:47,60), so Redis is
  verified against OpenSSL's default store (SSL_CERT_FILE here).
- node (streaming): pg with `ssl: {}` for any DB_SSLMODE but disable/no-verify (streaming/database.js:85-97), and
  ioredis from REDIS_URL (streaming/redis.js:48-60): both against node's store + NODE_EXTRA_CA_CERTS.
- python (fediops.mastodon.tls_check, the preflight): trust=ca with the database CA for PostgreSQL/PgBouncer,
  trust=system for Redis.

Cases: `deployed` (as in the pods) x right/wrong CA (another project's CA as the database CA) x right/wrong name;
and the two that MUST fail: Redis checked against the database CA, the database checked against the system store.
"""
from __future__ import annotations

import os

import pytest

import tlsenv
from conftest import MATRIX, WRONG_REDIS_NAME

# server -> (env file, client target): the migration path connects directly, web/sidekiq/streaming via the pool.
SERVERS = {'postgres': ('direct.env', 'pg'), 'pgbouncer': ('pool.env', 'pg'), 'redis': ('pool.env', 'redis')}

UNKNOWN_CA_CODES = ('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
                    'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT')

# What each client trusts for each server in each case (the matrix's `trusts` column).
TRUSTS = {
    ('ruby', 'pg', 'deployed'): 'PGSSLROOTCERT = database CA',
    ('ruby', 'redis', 'deployed'): 'OpenSSL default store (SSL_CERT_FILE = system + public CA)',
    ('ruby', 'redis', 'redis-against-db-ca'): 'OpenSSL default store = database CA only',
    ('ruby', 'pg', 'db-against-system-store'): 'PGSSLROOTCERT = system store',
    ('node', 'pg', 'deployed'): 'node store + NODE_EXTRA_CA_CERTS (database CA + public CA)',
    ('node', 'redis', 'deployed'): 'node store + NODE_EXTRA_CA_CERTS (database CA + public CA)',
    ('node', 'redis', 'redis-against-db-ca'): 'node store + NODE_EXTRA_CA_CERTS (database CA only)',
    ('node', 'pg', 'db-against-system-store'): 'node store + NODE_EXTRA_CA_CERTS (public CA only)',
    ('python', 'pg', 'deployed'): 'trust=ca: database CA',
    ('python', 'redis', 'deployed'): 'trust=system (SSL_CERT_FILE = system + public CA)',
    ('python', 'redis', 'redis-against-db-ca'): 'trust=ca: database CA',
    ('python', 'pg', 'db-against-system-store'): 'trust=system (SSL_CERT_FILE = system + public CA)',
}


def classify(result):
    """ok | unknown_ca | hostname | expired | other, from a client's result."""
    if result.get('ok'):
        return 'ok'
    code = result.get('code') or ''
    message = (result.get('message') or '').lower()
    if code in ('CERT_HAS_EXPIRED', 'expired') or 'expired' in message:
        return 'expired'
    if code in ('ERR_TLS_CERT_ALTNAME_INVALID', 'hostname_mismatch') or 'does not match' in message \
            or 'hostname mismatch' in message:
        return 'hostname'
    if code in UNKNOWN_CA_CODES + ('unknown_ca',) or 'certificate verify failed' in message or 'unable to verify' in message:
        return 'unknown_ca'
    return 'other'


def expected(server, ca, name):
    """The database CA matters for PostgreSQL/PgBouncer only; Redis is verified against the system store."""
    if ca == 'wrong' and server != 'redis':
        return 'unknown_ca'  # the chain is checked before the name
    return 'ok' if name == 'right' else 'hostname'


def record(client, server, case, ca, name, want, result):
    outcome = classify(result)
    target = 'redis' if server == 'redis' else 'pg'
    detail = result.get('detail') if outcome == 'ok' else '%s: %s' % (result.get('code'), result.get('message'))
    MATRIX.append(dict(client=client, server=server, case=case, ca=ca, name=name, expected=want, outcome=outcome,
                       trusts=TRUSTS[(client, target, case)],
                       detail=str(detail).replace('|', '/').replace('\n', ' ')[:160]))
    return outcome


@pytest.mark.parametrize('name', ['right', 'wrong'])
@pytest.mark.parametrize('ca', ['right', 'wrong'])
@pytest.mark.parametrize('server', sorted(SERVERS))
@pytest.mark.parametrize('client', ['node', 'ruby'])
def test_matrix(client, server, ca, name, deployment, clients):
    directory = deployment(ca=ca, name=name)
    env_file, target = SERVERS[server]
    result = clients.run(client, os.path.join(directory, env_file))[target]
    want = expected(server, ca, name)
    outcome = record(client, server, 'deployed', ca, name, want, result)
    assert outcome == want, '%s -> %s: %r' % (client, server, result)


@pytest.mark.parametrize('server', sorted(SERVERS))
@pytest.mark.parametrize('client', ['node', 'ruby'])
def test_must_fail(client, server, deployment, clients):
    """Redis verified against the database CA, and the database verified against the system store, both fail with
    an unknown CA: each server's certificate chains to one trust only (as on DigitalOcean)."""
    env_file, target = SERVERS[server]
    case = 'redis-against-db-ca' if server == 'redis' else 'db-against-system-store'
    result = clients.run(client, os.path.join(deployment(), env_file), targets=(target,), case=case)[target]
    outcome = record(client, server, case, 'right', 'right', 'unknown_ca', result)
    assert outcome == 'unknown_ca', '%s -> %s (%s): %r' % (client, server, case, result)


def _python_cases(env):
    """(server, case, ca, name, expected, tls_check options) for the preflight's checker."""
    ports = dict(postgres=env.postgres.port, pgbouncer=env.pgbouncer.port, redis=env.redis.port)
    cases = []
    for server, port in sorted(ports.items()):
        redis = server == 'redis'
        base = dict(host=tlsenv.REDIS_NAME if redis else tlsenv.PG_NAME, hostaddr='127.0.0.1', port=port, timeout=5,
                    protocol='redis' if redis else 'postgres')
        deployed = dict(base, trust='system') if redis else dict(base, trust='ca', ca_path=env.pki.ca_file)
        for ca in ('right', 'wrong'):
            for name in ('right', 'wrong'):
                opts = dict(deployed)
                if ca == 'wrong' and not redis:
                    opts['ca_path'] = env.pki.wrong_ca_file
                if name == 'wrong':
                    opts['host'] = WRONG_REDIS_NAME if redis else tlsenv.WRONG_NAME
                cases.append((server, 'deployed', ca, name, expected(server, ca, name), opts))
        if redis:
            cases.append((server, 'redis-against-db-ca', 'right', 'right', 'unknown_ca',
                          dict(base, trust='ca', ca_path=env.pki.ca_file)))
        else:
            cases.append((server, 'db-against-system-store', 'right', 'right', 'unknown_ca', dict(base, trust='system')))
    return cases


def test_matrix_preflight_checker(tls_check_many, tls_env):
    """fediops.mastodon.tls_check (Python's ssl, OpenSSL's default store under trust=system) on the same cases."""
    cases = _python_cases(tls_env)
    results = tls_check_many([opts for _server, _case, _ca, _name, _want, opts in cases])
    failures = []
    for (server, case, ca, name, want, _opts), res in zip(cases, results):
        # The message without its "host:port (protocol, trust ...)" prefix, for the matrix.
        result = dict(ok=res.get('verified'), code=res.get('error_kind'), message=(res.get('error') or '').split('): ', 1)[-1],
                      detail='verified, %s day(s) left' % res.get('expires_in_days'))
        outcome = record('python', server, case, ca, name, want, result)
        if outcome != want:
            failures.append((server, case, ca, name, want, outcome, res.get('error')))
    assert not failures, failures


def test_files_written_by_the_collection(deployment, tls_env):
    """The CA file is the cluster's CA, byte for byte; the env files carry what the clients read."""
    directory = deployment()
    with open(os.path.join(directory, 'do-ca.pem'), encoding='ascii') as handle:
        assert handle.read() == tls_env.pki.ca_pem()
    with open(os.path.join(directory, 'pool.env'), encoding='utf-8') as handle:
        text = handle.read()
    assert 'DB_SSLMODE=verify-full' in text
    assert 'PREPARED_STATEMENTS=false' in text
    assert 'REDIS_URL=rediss://' in text or 'REDIS_URL="rediss://' in text
    assert 'DB_PORT=%d' % tls_env.pgbouncer.port in text
    assert oct(os.stat(os.path.join(directory, 'pool.env')).st_mode & 0o777) == '0o600'
