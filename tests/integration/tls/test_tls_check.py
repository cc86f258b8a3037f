# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fediops.mastodon.tls_check against the real servers: ok, expired certificate, wrong CA, wrong name,
connection refused, timeout, TLS off, check mode; and the preflight playbook.

Trust as on DigitalOcean (tests/support/tlsenv.py): PostgreSQL and PgBouncer with trust=ca (the project CA),
Redis with trust=system (its certificate comes from the public test CA, in the system store SSL_CERT_FILE names).
"""
from __future__ import annotations

import json
import socket
import time

import pytest

import tlsenv
from conftest import NOTES, TIMINGS


def _opts(env, server, **extra):
    ports = dict(postgres=env.postgres.port, pgbouncer=env.pgbouncer.port, redis=env.redis.port)
    name = tlsenv.REDIS_NAME if server == 'redis' else tlsenv.PG_NAME
    opts = dict(host=name, hostaddr='127.0.0.1', port=ports[server], protocol='redis' if server == 'redis' else 'postgres',
                timeout=5)
    opts.update(dict(trust='system') if server == 'redis' else dict(trust='ca', ca_path=env.pki.ca_file))
    opts.update(extra)
    if opts.get('ca_path') and server == 'redis':
        opts['trust'] = 'ca'
    return opts


@pytest.mark.parametrize('server', ['postgres', 'pgbouncer', 'redis'])
def test_ok(tls_check, tls_env, server):
    start = time.monotonic()
    res = tls_check(**_opts(tls_env, server))
    TIMINGS['ok %s (ansible-playbook, one task)' % server] = time.monotonic() - start
    assert not res.get('failed'), res
    assert res['verified'] is True and res['error_kind'] is None and res['changed'] is False
    assert res['chain'][0]['names'] == [tlsenv.REDIS_NAME if server == 'redis' else tlsenv.PG_NAME]
    if server == 'redis':
        assert res['trust'] == 'system' and res['ca'] == [] and 'Public Test Root' in res['chain'][0]['issuer']
    else:
        assert res['trust'] == 'ca' and res['chain'][0]['issuer'] == res['ca'][0]['subject']
    assert res['expires_in_days'] > 30
    assert res['tls_version'].startswith('TLSv1.')
    TIMINGS['ok %s (module)' % server] = res['elapsed']


def test_ok_ca_pem_check_mode(tls_check, tls_env):
    opts = _opts(tls_env, 'postgres')
    opts.pop('ca_path')
    opts['ca_pem'] = tls_env.pki.ca_pem()
    res = tls_check(check=True, **opts)
    assert res['verified'] is True, res


def test_expired(tls_check, tls_env):
    expired = tls_env.start_expired_redis()
    res = tls_check(**dict(_opts(tls_env, 'redis'), port=expired.port))
    assert res['failed'] and res['error_kind'] == 'expired', res
    assert 'certificate expired' in res['msg'] and tlsenv.REDIS_NAME in res['msg']
    assert res['chain'][0]['expired'] is True and res['chain'][0]['days_left'] < 0
    TIMINGS['expired (module)'] = res['elapsed']
    NOTES['expired certificate'] = res['msg']


@pytest.mark.parametrize('server', ['postgres', 'redis'])
def test_wrong_ca(tls_check, tls_env, server):
    res = tls_check(**_opts(tls_env, server, ca_path=tls_env.pki.wrong_ca_file))
    assert res['failed'] and res['error_kind'] == 'unknown_ca', res
    assert 'unknown CA' in res['msg'] and 'Other Project CA' in res['msg']
    assert res['chain'], 'the chain is reported even when verification fails'
    TIMINGS['wrong CA %s (module)' % server] = res['elapsed']
    NOTES['wrong CA (%s)' % server] = res['msg']


@pytest.mark.parametrize('server', ['pgbouncer', 'redis'])
def test_wrong_name(tls_check, tls_env, server):
    res = tls_check(**_opts(tls_env, server, host=tlsenv.WRONG_NAME))
    assert res['failed'] and res['error_kind'] == 'hostname_mismatch', res
    assert 'hostname mismatch' in res['msg'] and tlsenv.WRONG_NAME in res['msg']
    TIMINGS['wrong name %s (module)' % server] = res['elapsed']
    NOTES['wrong name (%s)' % server] = res['msg']


def test_redis_against_the_database_ca(tls_check, tls_env):
    """The old preflight's mistake: DigitalOcean's Valkey certificate does not chain to the database CA."""
    res = tls_check(**_opts(tls_env, 'redis', trust='ca', ca_path=tls_env.pki.ca_file))
    assert res['failed'] and res['error_kind'] == 'unknown_ca', res
    assert 'does not chain to the given CA' in res['msg'] and 'publicly trusted' in res['msg'], res['msg']
    NOTES['redis against the database CA'] = res['msg']


def test_database_against_the_system_store(tls_check, tls_env):
    """PostgreSQL's certificate comes from the project's private CA: the system store does not verify it."""
    res = tls_check(**_opts(tls_env, 'postgres', trust='system', ca_path=None))
    assert res['failed'] and res['error_kind'] == 'unknown_ca', res
    assert 'does not chain to the system trust store' in res['msg'] and "project's private CA" in res['msg'], res['msg']
    NOTES['database against the system store'] = res['msg']


def test_redis_ca_missing_from_the_system_store(tls_check, tls_env):
    """A Redis whose CA the system store lacks (the machine's bundle without the public test CA), as a self-managed
    Redis with a private CA: the message says that web and Sidekiq trust only the system store (Mastodon's Redis
    client takes no CA option, lib/mastodon/redis_configuration.rb:47,60)."""
    res = tls_check(env={'SSL_CERT_FILE': tlsenv.MACHINE_CA_BUNDLE}, **_opts(tls_env, 'redis'))
    assert res['failed'] and res['error_kind'] == 'unknown_ca', res
    assert 'does not chain to the system trust store' in res['msg'], res['msg']
    assert 'publicly trusted certificate' in res['msg'] and 'set config_redis_ca_pem' not in res['msg'], res['msg']
    NOTES['redis, CA not in the system store'] = res['msg']


@pytest.mark.parametrize('options, message', [
    (dict(trust='ca'), 'trust=ca needs the CA'),
    (dict(trust='system', ca_pem='x'), 'trust=system checks against the system trust store only'),
])
def test_trust_needs_consistent_options(tls_check, tls_env, options, message):
    opts = dict(host=tlsenv.PG_NAME, port=tls_env.postgres.port, protocol='postgres')
    opts.update(options)
    res = tls_check(**opts)
    assert res['failed'] and message in res['msg'], res


def test_server_name_differs_from_host(tls_check, tls_env):
    """host is only an address; server_name is what is verified."""
    res = tls_check(**_opts(tls_env, 'postgres', host='127.0.0.1', hostaddr=None, server_name=tlsenv.PG_NAME))
    assert res['verified'] is True, res


def test_connection_refused(tls_check, tls_env):
    port = tlsenv.free_port()
    res = tls_check(**_opts(tls_env, 'postgres', port=port))
    assert res['failed'] and res['error_kind'] == 'connection_refused', res
    assert 'connection refused by 127.0.0.1:%d' % port in res['msg']


def test_timeout(tls_check, tls_env):
    """A server that accepts and never answers the SSLRequest."""
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        start = time.monotonic()
        res = tls_check(**_opts(tls_env, 'postgres', port=listener.getsockname()[1], timeout=1))
        assert time.monotonic() - start < 20
    assert res['failed'] and res['error_kind'] == 'timeout', res
    assert 'timeout' in res['msg']


def test_not_postgres_and_fail_on_error_false(tls_check, tls_env):
    """SSLRequest sent to Redis (TLS port): not a PostgreSQL server; reported without failing the task."""
    res = tls_check(**_opts(tls_env, 'redis', protocol='postgres', fail_on_error=False))
    assert not res.get('failed') and res['verified'] is False, res
    assert res['error_kind'] == 'protocol' and 'not a PostgreSQL server' in res['error'], res
    assert res['error']


def _preflight_vars(env, **override):
    values = dict(preflight_db_host=tlsenv.PG_NAME, preflight_db_port=env.postgres.port,
                  preflight_pool_host=tlsenv.PG_NAME, preflight_pool_port=env.pgbouncer.port,
                  preflight_redis_host=tlsenv.REDIS_NAME, preflight_redis_port=env.redis.port,
                  preflight_ca_path=env.pki.ca_file, preflight_hostaddr='127.0.0.1')
    values.update(override)
    return values


def _run_preflight(run_playbook, extra_vars, env):
    return run_playbook('- ansible.builtin.import_playbook: fediops.mastodon.preflight\n', extra_vars=extra_vars,
                        env=env.system_store_env())


def test_preflight_playbook_ok(run_playbook, tls_env):
    start = time.monotonic()
    result = _run_preflight(run_playbook, _preflight_vars(tls_env), tls_env)
    TIMINGS['preflight playbook, 3 endpoints (ansible-playbook)'] = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_preflight_playbook_wrong_ca_stops(run_playbook, tls_env):
    result = _run_preflight(run_playbook, _preflight_vars(tls_env, preflight_ca_path=tls_env.pki.wrong_ca_file), tls_env)
    assert result.returncode != 0
    text = json.dumps(result.data)
    assert 'unknown CA' in text and 'TLS preflight failed' in text, text[-3000:]


def test_preflight_playbook_disabled(run_playbook, tls_env):
    result = _run_preflight(run_playbook, _preflight_vars(tls_env, preflight_ca_path=tls_env.pki.wrong_ca_file,
                                                          mastodon_tls_preflight=False), tls_env)
    assert result.returncode == 0, result.stdout[-3000:]
