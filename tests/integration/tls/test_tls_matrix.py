# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TLS end to end: the CA fetched by do_database_ca and the .env.production written by mastodon_env, read by
the real clients of Mastodon's three components, against real PostgreSQL, PgBouncer and Redis.

client x server x right/wrong CA x right/wrong name. The right CA and name connect; a CA of another project
fails certificate verification; the right CA with a name the certificate does not carry fails the hostname check.
"""
from __future__ import annotations

import os

import pytest

from conftest import MATRIX

# server -> (env file, client target): the migration path connects directly, web/sidekiq/streaming via the pool.
SERVERS = {'postgres': ('direct.env', 'pg'), 'pgbouncer': ('pool.env', 'pg'), 'redis': ('pool.env', 'redis')}

UNKNOWN_CA_CODES = ('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
                    'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT')


def classify(result):
    """ok | unknown_ca | hostname | expired | other, from a client's result."""
    if result.get('ok'):
        return 'ok'
    code = result.get('code') or ''
    message = (result.get('message') or '').lower()
    if code == 'CERT_HAS_EXPIRED' or 'expired' in message:
        return 'expired'
    if code == 'ERR_TLS_CERT_ALTNAME_INVALID' or 'does not match' in message or 'hostname mismatch' in message:
        return 'hostname'
    if code in UNKNOWN_CA_CODES or 'certificate verify failed' in message or 'unable to verify' in message:
        return 'unknown_ca'
    return 'other'


def expected(ca, name):
    if ca == 'wrong':
        return 'unknown_ca'  # the chain is checked before the name
    return 'ok' if name == 'right' else 'hostname'


@pytest.mark.parametrize('name', ['right', 'wrong'])
@pytest.mark.parametrize('ca', ['right', 'wrong'])
@pytest.mark.parametrize('server', sorted(SERVERS))
@pytest.mark.parametrize('client', ['node', 'ruby'])
def test_matrix(client, server, ca, name, deployment, clients):
    directory = deployment(ca=ca, name=name)
    env_file, target = SERVERS[server]
    result = clients.run(client, os.path.join(directory, env_file))[target]
    outcome = classify(result)
    want = expected(ca, name)
    detail = result.get('detail') if outcome == 'ok' else '%s: %s' % (result.get('code'), result.get('message'))
    MATRIX.append(dict(client=client, server=server, ca=ca, name=name, expected=want, outcome=outcome,
                       detail=str(detail).replace('|', '/').replace('\n', ' ')[:160]))
    assert outcome == want, '%s -> %s: %r' % (client, server, result)


def test_files_written_by_the_collection(deployment, tls_env):
    """The CA file is the cluster's CA, byte for byte; the env files carry what the clients read."""
    directory = deployment()
    with open(os.path.join(directory, 'do-ca.pem'), encoding='ascii') as handle:
        assert handle.read() == tls_env.pki.ca_pem()
    with open(os.path.join(directory, 'pool.env'), encoding='utf-8') as handle:
        text = handle.read()
    assert 'DB_SSLMODE=verify-full' in text
    assert 'PREPARED_STATEMENTS=false' in text
    assert 'DB_PORT=%d' % tls_env.pgbouncer.port in text
    assert oct(os.stat(os.path.join(directory, 'pool.env')).st_mode & 0o777) == '0o600'
