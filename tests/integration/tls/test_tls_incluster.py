# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The in-cluster TLS check (plugins/module_utils/_tls_incluster.py).

1. Its node script, run for real by the machine's node against the real servers, with the trust the Job gives it:
   PostgreSQL/PgBouncer against the CA file (as mounted from the <name>-db-ca Secret), Redis against node's
   default store (what ioredis uses in the streaming server, streaming/redis.js:48-60). The public test CA joins
   node's store through NODE_EXTRA_CA_CERTS, node's documented way (tests/support/tlsenv.py).
2. The Job on the local cluster: created in the namespace, deleted afterwards, and a failure surfaced. kubesim runs
   no container (tests/cluster/README.md): a Job pod "succeeds" without output, or fails with the message of the
   annotation sim.fediops.test/fail-message, which stands for what the container would have written.
3. The unreachable controller: preflight() against endpoints nothing answers on names them, says that the
   controller cannot reach them and offers this in-cluster path.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

import tlsenv
from conftest import MATRIX, NOTES

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient
from ansible_collections.fediops.mastodon.plugins.module_utils._tls_check import preflight
from ansible_collections.fediops.mastodon.plugins.module_utils._tls_incluster import (
    NODE_SCRIPT, InClusterError, job_manifest, parse_job_output, run_job)

KIND_TO_OUTCOME = {None: 'ok', 'unknown_ca': 'unknown_ca', 'hostname_mismatch': 'hostname', 'expired': 'expired'}


def _cases(env):
    """(server, case, ca, name, expected, endpoint) for the script."""
    expired = env.start_expired_redis()
    pg = dict(host=tlsenv.PG_NAME, hostaddr='127.0.0.1', protocol='postgres', trust='ca', ca_file=env.pki.ca_file)
    kv = dict(host=tlsenv.REDIS_NAME, hostaddr='127.0.0.1', protocol='redis', trust='system', port=env.redis.port)
    cases = []
    for server, port in (('postgres', env.postgres.port), ('pgbouncer', env.pgbouncer.port)):
        cases += [
            (server, 'deployed', 'right', 'right', 'ok', dict(pg, port=port)),
            (server, 'deployed', 'wrong', 'right', 'unknown_ca', dict(pg, port=port, ca_file=env.pki.wrong_ca_file)),
            (server, 'deployed', 'right', 'wrong', 'hostname', dict(pg, port=port, server_name=tlsenv.WRONG_NAME)),
            (server, 'db-against-system-store', 'right', 'right', 'unknown_ca',
             dict(pg, port=port, trust='system', ca_file=None)),
        ]
    cases += [
        ('redis', 'deployed', 'right', 'right', 'ok', dict(kv)),
        ('redis', 'deployed', 'right', 'wrong', 'hostname', dict(kv, server_name=tlsenv.WRONG_NAME)),
        ('redis', 'redis-against-db-ca', 'right', 'right', 'unknown_ca', dict(kv, trust='ca', ca_pem=env.pki.ca_pem())),
        ('redis', 'deployed (expired certificate)', 'right', 'right', 'expired', dict(kv, port=expired.port)),
    ]
    for index, case in enumerate(cases):
        case[5]['name'] = 'case%d' % index
    return cases


def _run_script(env, endpoints, extra_ca_file):
    """node -e NODE_SCRIPT, as the Job's container runs it; returns (exit code, stdout)."""
    items = [dict((k, v) for k, v in e.items() if v is not None) for e in endpoints]
    proc_env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'FEDIOPS_TLS_ENDPOINTS': json.dumps(items),
                'FEDIOPS_TLS_TIMEOUT': '5', 'NODE_EXTRA_CA_CERTS': extra_ca_file}
    completed = subprocess.run(['node', '-e', NODE_SCRIPT], capture_output=True, text=True, env=proc_env, timeout=120,
                               check=False)
    assert completed.returncode in (0, 1), completed.stderr
    return completed.returncode, completed.stdout


def test_node_script_against_the_servers(tls_env):
    cases = _cases(tls_env)
    code, out = _run_script(tls_env, [c[5] for c in cases], tls_env.pki.public_ca_file)
    result = parse_job_output(out)
    assert code == 1 and result['failed']  # some cases must fail
    failures = []
    for (server, case, ca, name, want, endpoint), res in zip(cases, result['results']):
        assert res['name'] == endpoint['name']
        outcome = KIND_TO_OUTCOME.get(res['error_kind'], 'other')
        trusts = ('CA file %s' % os.path.basename(endpoint['ca_file']) if endpoint.get('ca_file') else
                  'ca_pem: database CA' if endpoint.get('ca_pem') else 'node store + NODE_EXTRA_CA_CERTS (public CA)')
        MATRIX.append(dict(client='node in-cluster script', server=server, case=case, ca=ca, name=name, expected=want,
                           outcome=outcome, trusts=trusts,
                           detail=('%s day(s) left' % res.get('days_left')) if outcome == 'ok' else
                           ('%s: %s' % (res.get('code'), res.get('message'))).replace('|', '/')[:120]))
        if outcome != want:
            failures.append((server, case, ca, name, want, outcome, res.get('error')))
    assert not failures, failures
    messages = dict((c[1] + ' ' + c[0], r['error']) for c, r in zip(cases, result['results']) if r['error'])
    assert 'publicly trusted' in messages['redis-against-db-ca redis']
    assert "project's private CA" in messages['db-against-system-store postgres']
    NOTES['in-cluster script, redis against the database CA'] = messages['redis-against-db-ca redis']


def test_node_script_all_verified_exits_0(tls_env):
    endpoints = [dict(name='pool', host=tlsenv.PG_NAME, hostaddr='127.0.0.1', port=tls_env.pgbouncer.port,
                      protocol='postgres', trust='ca', ca_file=tls_env.pki.ca_file),
                 dict(name='redis', host=tlsenv.REDIS_NAME, hostaddr='127.0.0.1', port=tls_env.redis.port,
                      protocol='redis', trust='system')]
    code, out = _run_script(tls_env, endpoints, tls_env.pki.public_ca_file)
    result = parse_job_output(out)
    assert code == 0 and result['failed'] is False and result['msg'] is None, out
    assert [r['tls_version'].startswith('TLSv1.') for r in result['results']] == [True, True]


def test_node_script_unreachable_and_bad_ca_file(tls_env, tmp_path):
    endpoints = [dict(name='database', host='127.0.0.1', port=tlsenv.free_port(), protocol='postgres', trust='ca',
                      ca_file=tls_env.pki.ca_file),
                 dict(name='pool', host=tlsenv.PG_NAME, hostaddr='127.0.0.1', port=tls_env.pgbouncer.port,
                      protocol='postgres', trust='ca', ca_file=str(tmp_path / 'missing.crt'))]
    _code, out = _run_script(tls_env, endpoints, tls_env.pki.public_ca_file)
    result = parse_job_output(out)
    assert [r['error_kind'] for r in result['results']] == ['connection_refused', 'ca_invalid']
    assert 'the Kubernetes cluster cannot reach database either' in result['msg']
    assert 'missing.crt cannot be read' in result['msg']


def test_controller_cannot_reach_the_databases(tls_env):
    """Nothing answers (closed ports: refused, as a firewall that rejects): the message names each endpoint, says the
    controller cannot reach it, that trusted sources may admit only the cluster, and offers the in-cluster check."""
    endpoints = [dict(name='database', host=tlsenv.PG_NAME, hostaddr='127.0.0.1', port=tlsenv.free_port(),
                      protocol='postgres', trust='ca', ca_pem=tls_env.pki.ca_pem()),
                 dict(name='redis', host=tlsenv.REDIS_NAME, hostaddr='127.0.0.1', port=tlsenv.free_port(),
                      protocol='redis', trust='system')]
    result = preflight(endpoints, timeout=3)
    assert result['failed'] and result['unreachable'] == ['database', 'redis']
    assert result['msg'].startswith('TLS preflight failed: the controller cannot reach database, redis (')
    for words in ('connection refused', 'DigitalOcean trusted sources may admit only the Kubernetes cluster',
                  'in-cluster check', 'short-lived Job in the namespace'):
        assert words in result['msg'], result['msg']
    NOTES['controller cannot reach the databases'] = result['msg']


@pytest.fixture
def kube(kube_cluster):
    namespace = 'tls-incluster-' + uuid.uuid4().hex[:6]
    kube_cluster.kubectl('create', 'namespace', namespace)
    yield KubeClient(kubeconfig=kube_cluster.kubeconfig), namespace, kube_cluster
    kube_cluster.kubectl('delete', 'namespace', namespace, '--ignore-not-found', '--wait=false', check=False)


def _endpoints(env):
    return [dict(name='database', host=tlsenv.PG_NAME, port=25060, protocol='postgres', trust='ca',
                 ca_pem=env.pki.ca_pem()),
            dict(name='redis', host=tlsenv.REDIS_NAME, port=25061, protocol='redis', trust='system')]


def _jobs(cluster, namespace):
    return cluster.kubectl('get', 'jobs', '-n', namespace, '-o', 'name', check=False).stdout.split()


def test_job_failure_is_surfaced_and_the_job_deleted(kube, tls_env):
    client, namespace, cluster = kube
    message = 'node: getaddrinfo ENOTFOUND db-postgresql (simulated)'
    job = job_manifest('mastodon', namespace, 'ghcr.io/mastodon/mastodon-streaming:v4.6.5', _endpoints(tls_env),
                       pod_annotations={'sim.fediops.test/fail': 'true', 'sim.fediops.test/fail-message': message})
    with pytest.raises(InClusterError) as info:
        run_job(client, job, wait_timeout=60, poll_interval=0.5)
    assert str(info.value) == ('the in-cluster TLS check Job %s/%s ended without a result: Error (exit code 1): %s'
                               % (namespace, job['metadata']['name'], message))
    assert _jobs(cluster, namespace) == []
    NOTES['in-cluster Job failure (kubesim)'] = str(info.value)


def test_job_without_output_is_reported_and_deleted(kube, tls_env):
    """kubesim "completes" the pod without running node: no result line, said so; the Job is created, then deleted."""
    client, namespace, cluster = kube
    job = job_manifest('mastodon', namespace, 'ghcr.io/mastodon/mastodon-streaming:v4.6.5', _endpoints(tls_env),
                       ca_secret='mastodon-db-ca')
    seen = []
    original = client.request

    def spy(method, path, *args, **kwargs):
        if method == 'GET' and path.endswith('/jobs/' + job['metadata']['name']) and not seen:
            seen.extend(_jobs(cluster, namespace))
        return original(method, path, *args, **kwargs)

    client.request = spy
    with pytest.raises(InClusterError) as info:
        run_job(client, job, wait_timeout=60, poll_interval=0.5)
    assert seen == ['job.batch/%s' % job['metadata']['name']]
    assert 'ended without a result: Completed (exit code 0)' in str(info.value)
    assert _jobs(cluster, namespace) == []
