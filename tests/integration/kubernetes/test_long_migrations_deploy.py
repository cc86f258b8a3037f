# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole deploy (mastodon_deploy's plan and apply, _deploy.plan.Deploy as the action runs it) with a
pre-deployment migration that outlives migrations_wait_timeout, against the real API server (tests/cluster):

1. the deploy returns (no exception: rc 0) with migrations_running, having applied config and migrate-pre only:
   no rollout of web, streaming or sidekiq; the deploy record says phase config, migrations_running pre;
2. a deploy of another version meanwhile is refused by the plan, naming config_mastodon_version, before any write;
3. the re-run re-attaches to the running Job, and once it has finished goes on: rollout, post-deployment Job;
   the record says phase post, post_migrations done, the schema version the Job's log proved;
4. the next plan reads the record: going back to 4.5 is refused (4.6's post-deployment migrations have run).
Audit log: the pre Job created once, never deleted."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid

import pytest
import yaml

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(_ROOT)))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
sys.path.insert(0, os.path.join(_ROOT, 'molecule', 'default', 'files'))

from audit_writes import writes as audit_writes  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import errors, plan, record, variables  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient  # noqa: E402

SPECS = variables.load_role_specs(os.path.join(_ROOT, 'roles'), yaml.safe_load)
LOG = ['fediops: schema_version=20250201000000',
       '== 20260601000000 AddContent: migrating =====================================',
       '== 20260601000000 AddContent: migrated (0.0100s) ============================'] + \
    ['-- backfilling'] * 20 + ['== 20260601000100 IndexContent: migrating ==================================='] + \
    ['-- add_index'] * 95 + ['== 20260601000100 IndexContent: migrated (1190.0000s) ======================']


@pytest.fixture
def namespace(kube_cluster):
    name = 'longdeploy-' + uuid.uuid4().hex[:8]
    kube_cluster.kubectl('create', 'namespace', name)
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--wait=false', check=False)


def _vars(namespace, version):
    return {'config_namespace': namespace, 'config_name': 'masto', 'config_mastodon_version': version,
            'config_local_domain': 'social.example', 'config_database_source': 'explicit',
            'config_db_host': 'db.example', 'config_db_password': 'pw-0123456789',
            'config_redis_url': 'rediss://default:pw@redis.example:25061', 'config_media_ephemeral': True,
            'config_tls_preflight': False, 'migrations_wait_timeout': 45,
            'migrations_pod_annotations': {'sim.fediops.test/delay-seconds': '1200', 'sim.fediops.test/log': '\n'.join(LOG)}}


def _deploy(kube_cluster, namespace, version, shown=None):
    deploy = plan.Deploy(_vars(namespace, version), SPECS, plan.COMPONENTS,
                         kube_client=lambda: KubeClient(kubeconfig=kube_cluster.kubeconfig),
                         progress=(shown.append if shown is not None else None))
    deploy.plan()
    return deploy.apply()


def _writes(path, offset, namespace):
    time.sleep(1)
    with open(path, 'rb') as handle:
        handle.seek(offset)
        lines = handle.read().decode('utf-8', 'replace').splitlines()
    return audit_writes(lines, namespace)


def test_the_deploy_stops_after_a_long_pre_migration_and_a_rerun_goes_on(kube_cluster, namespace):
    audit = os.path.join(str(kube_cluster.state_dir), 'logs', 'audit.log')
    assert os.path.exists(audit)
    offset = os.path.getsize(audit)
    client = KubeClient(kubeconfig=kube_cluster.kubeconfig)

    shown = []
    started = time.monotonic()
    out = _deploy(kube_cluster, namespace, 'v4.6.5', shown)
    first = time.monotonic() - started
    assert out['migrations_running'] is True
    assert list(out['components']) == ['config', 'migrate-pre']  # no rollout after a pre Job still running
    assert 'Not started: web, streaming, sidekiq, migrate-post; run the deploy again later' in out['msg']
    assert out['msg'] in out['warnings']
    job_name = out['components']['migrate-pre']['running_jobs'][0]['name']
    assert kube_cluster.kubectl('get', 'deployment', '-n', namespace, 'masto-web', check=False).returncode != 0
    stored = record.read_record(client, namespace, 'masto')['current']
    assert (stored['version'], stored['phase'], stored['migrations_running'], stored['lines_run']) == \
        ('v4.6.5', 'config', 'pre', [])
    assert any(text.startswith('migrate-pre: running migration 20260601000000 AddContent') for text in shown), shown

    before_other = os.path.getsize(audit)
    with pytest.raises(errors.PlanError) as refused:
        _deploy(kube_cluster, namespace, 'v4.6.6')
    assert refused.value.variables == ['config_mastodon_version']
    assert 'a pre-deployment migration of v4.6.5 is still running' in refused.value.message()
    assert [w for w in _writes(audit, before_other, namespace) if w['verb'] != 'get'] == []

    done = threading.Event()

    def finish():
        # 15 s into the re-run, the migration ends; so does the post-deployment Job's, which gets the same
        # annotations (migrations_pod_annotations), as soon as its pod exists.
        time.sleep(15)
        while not done.is_set():
            kube_cluster.kubectl('annotate', 'pods', '--all', '-n', namespace, '--overwrite',
                                 'sim.fediops.test/delay-seconds=0', check=False)
            done.wait(2)

    finisher = threading.Thread(target=finish)
    finisher.start()
    started = time.monotonic()
    try:
        again = _deploy(kube_cluster, namespace, 'v4.6.5')
    finally:
        done.set()
        finisher.join()
    second = time.monotonic() - started
    assert 'migrations_running' not in again
    assert list(again['components']) == list(plan.COMPONENTS)
    assert [(o['name'], o['action']) for o in again['components']['migrate-pre']['objects']] == []  # re-attached
    stored = record.read_record(client, namespace, 'masto')['current']
    assert (stored['phase'], stored['post_migrations'], stored['outcome'], stored['lines_run']) == \
        ('post', 'done', 'ok', ['4.6'])
    assert stored['schema_version'] == '20260601000100'

    # The record is read by the next plan: back to 4.5 after 4.6's post-deployment migrations is refused, unwritten.
    before_back = os.path.getsize(audit)
    with pytest.raises(errors.PlanError) as back:
        _deploy(kube_cluster, namespace, 'v4.5.15')
    assert back.value.variables == ['config_mastodon_version']
    assert 'post-deployment migrations of 4.6 (v4.6.5) have run' in back.value.message()
    assert 'delete the ConfigMap masto-deploy-record' in back.value.message()
    assert _writes(audit, before_back, namespace) == []

    jobs = [w for w in _writes(audit, offset, namespace) if w['resource'] == 'jobs']
    pre = [w for w in jobs if w['name'] == job_name]
    assert [(w['verb'], w['code']) for w in pre] == [('patch', 201)], jobs
    assert not [w for w in jobs if w['verb'] in ('delete', 'deletecollection')], jobs
    print('\nwhole deploy: first run stopped after %.1f s with migrations_running (config and migrate-pre only); '
          'another version refused: %s; the re-run re-attached and finished the deploy in %.1f s; Job writes: %s; '
          'record: %s' % (first, refused.value.errors[0], second,
                          [(w['verb'], w['name'], w['code']) for w in jobs], json.dumps(stored, sort_keys=True)))
