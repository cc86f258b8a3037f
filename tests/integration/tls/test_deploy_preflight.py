# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/deploy.yml runs the TLS preflight after the shared configuration and stops before the migrations.

Real PostgreSQL, PgBouncer and Redis with TLS (tests/support/tlsenv.py) behind the DigitalOcean stand-in, and the
real local Kubernetes cluster: the deploy looks up the cluster tls-other-pg, whose CA (another project's) did not
sign the database's certificates, so the direct endpoint and the pool fail with "unknown CA" and no migration Job is
created. Redis is checked against the system trust store (its certificate comes from the public test CA, as
DigitalOcean's Valkey from Let's Encrypt), so the database CA does not matter for it and it passes.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest

import tlsenv

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEPLOY = os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')

PLAY = '''\
- name: Deploy
  ansible.builtin.import_playbook: {deploy}
'''


def _vars(tls_standin, namespace, cluster, preflight=True):
    return {
        'config_namespace': namespace,
        'config_local_domain': 'tls.example.social',
        'config_database_source': 'digitalocean',
        'config_do_database_cluster': cluster,
        'config_do_redis_cluster': 'tls-valkey',
        'config_do_api_base_url': tls_standin['base_url'],
        'config_do_ca_path': tls_standin['ca_file'],
        'config_db_name': tlsenv.DB_NAME,
        'config_tls_preflight': preflight,
        # The certificates name DigitalOcean hosts; connect on loopback and verify against those names.
        'preflight_hostaddr': '127.0.0.1',
        'preflight_timeout': 5,
    }


@pytest.fixture
def namespace(kube_cluster):
    name = 'preflight-' + uuid.uuid4().hex[:8]
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--ignore-not-found', '--wait=false', check=False)


def _run(run_playbook, kube_cluster, tls_standin, extra_vars, tls_env):
    env = {'K8S_AUTH_KUBECONFIG': kube_cluster.kubeconfig, 'DIGITALOCEAN_ACCESS_TOKEN': tls_standin['token']}
    env.update(tls_env.system_store_env())
    return run_playbook(PLAY.format(deploy=json.dumps(DEPLOY)), extra_vars=extra_vars, callback='default', env=env)


def test_wrong_ca_stops_the_deploy_before_the_migrations(run_playbook, kube_cluster, tls_standin, tls_env, namespace):
    start = time.monotonic()
    res = _run(run_playbook, kube_cluster, tls_standin, _vars(tls_standin, namespace, 'tls-other-pg'), tls_env)
    elapsed = time.monotonic() - start
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    assert 'TASK [Stop when an endpoint fails the TLS preflight]' in out, out[-4000:]
    assert 'TLS preflight failed: ' in out, out[-4000:]
    message = next(line for line in out.splitlines() if 'TLS preflight failed: ' in line)
    # Each failing endpoint is named with why: the direct database and the PgBouncer pool, against the database CA.
    for endpoint in ('database: ', 'pool: '):
        assert endpoint in message, message
    assert message.count('unknown CA') == 2 and 'does not chain to the given CA' in message, message
    # Redis passed against the system store: the database CA is not Redis's trust.
    assert 'redis: ' not in message, message
    # Stopped before the pre-deployment migrations: no migration Job, no workload.
    assert 'Pre-deployment migrations' not in out and 'fediops.mastodon.migrations' not in out, out[-4000:]
    jobs = kube_cluster.kubectl('get', 'jobs,deployments', '-n', namespace, '-o', 'name', check=False)
    assert jobs.stdout.strip() == '', jobs.stdout
    print('deploy stopped by the preflight after %.1fs:\n%s' % (elapsed, message.strip()))


def test_preflight_off_is_skipped(run_playbook, kube_cluster, tls_standin, tls_env, namespace):
    """With config_tls_preflight=false the check does not run (the deploy goes on to the migrations)."""
    extra = _vars(tls_standin, namespace, 'tls-other-pg', preflight=False)
    extra['migrations_wait_timeout'] = 1
    extra['migrations_pod_annotations'] = {'sim.fediops.test/fail': 'true'}  # end the deploy at the first Job
    res = _run(run_playbook, kube_cluster, tls_standin, extra, tls_env)
    out = res.stdout + res.stderr
    assert 'TLS preflight failed' not in out and 'tls_check' not in out, out[-4000:]
    assert 'Pre-deployment migrations' in out or 'fediops.mastodon.migrations' in out, out[-4000:]
