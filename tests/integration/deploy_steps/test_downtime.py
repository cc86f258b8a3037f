# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade with downtime (config_upgrade_with_downtime, plugins/module_utils/_deploy/downtime.py) through
playbooks/deploy.yml, against the local Kubernetes API server and the DigitalOcean API stand-in.

v4.6.9 is installed, and its deploy record says the schema is older than 4.7's zero-downtime floor
(2024_10_07_071624: with SKIP_POST_DEPLOYMENT_MIGRATIONS set, Mastodon aborts below it, lib/tasks/db.rake:68-72).
Then:
- v4.7.6 without downtime is refused by the plan, naming config_mastodon_version and the override;
- with config_upgrade_with_downtime: true, the stop step scales web, streaming and Sidekiq to 0 and every one of
  their pods is deleted (the API server's audit log) BEFORE the migration Job is created; the Job runs
  `db:migrate` without the variable; then web, streaming and Sidekiq run v4.7.6 with their replicas;
- a re-run stops nothing.
"""
from __future__ import annotations

import json
import secrets

import pytest

from test_deploy_steps import Runner, failures, tasks_of
from test_rollback import Cluster, one_task_playbook

BELOW_4_7_FLOOR = '20240101000000'
FLOOR_4_7 = '20241007071624'
STOP_TASK = 'Stop for the upgrade with downtime (only with config_upgrade_with_downtime)'
JOB = 'mastodon-migrate-downtime-v4-7-6'


def audit_events(cluster, offset):
    with open(cluster.audit_log, 'rb') as handle:
        handle.seek(offset)
        lines = handle.read().decode('utf-8', 'replace').splitlines()
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        ref = event.get('objectRef') or {}
        if (event.get('stage') == 'ResponseComplete' and ref.get('namespace') == cluster.namespace
                and 'dryRun=All' not in (event.get('requestURI') or '')
                and event.get('verb') in ('create', 'patch', 'update', 'delete')
                and (event.get('responseStatus') or {}).get('code') in (200, 201)):
            out.append(event)
    return out


def workload_pods(cluster):
    out = json.loads(cluster.kube.kubectl('-n', cluster.namespace, 'get', 'pods', '-o', 'json').stdout)
    return sorted(p['metadata']['name'] for p in out['items']
                  if p['metadata']['name'].startswith(('mastodon-web-', 'mastodon-streaming-', 'mastodon-sidekiq-')))


def set_schema(cluster, schema):
    record = cluster.record()
    record['current']['schema_version'] = schema
    patch = {'data': {'record.json': json.dumps(record)}}
    cluster.kube.kubectl('-n', cluster.namespace, 'patch', 'configmap', 'mastodon-deploy-record', '--type', 'merge',
                         '-p', json.dumps(patch))


@pytest.fixture
def setup(kube_cluster, do_standin_session, tmp_path):
    do_standin_session.reset()
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path), 'downtime-' + secrets.token_hex(3))
    cluster = Cluster(kube_cluster, runner.namespace)
    yield runner, cluster, one_task_playbook(str(tmp_path))
    kube_cluster.kubectl('delete', 'namespace', runner.namespace, '--wait=false', check=False)


def test_an_upgrade_below_the_floor_stops_everything_migrates_once_then_rolls_out(setup):
    runner, cluster, full = setup
    done, data = runner.run(runner.variables('v4.6.9'), playbook=full, callback='json')
    assert done.returncode == 0, failures(done, data)
    set_schema(cluster, BELOW_4_7_FLOOR)
    old_pods = workload_pods(cluster)
    assert old_pods

    done, data = runner.run(runner.variables('v4.7.6'), callback='json')
    assert done.returncode != 0
    refusal = failures(done, data)
    assert 'zero-downtime floor' in refusal and 'config_upgrade_with_downtime: true' in refusal, refusal

    offset = cluster.audit_offset()
    done, data = runner.run(runner.variables('v4.7.6', config_upgrade_with_downtime=True), callback='json')
    assert done.returncode == 0, failures(done, data)
    results = dict(tasks_of(data))
    assert results[STOP_TASK]['changed'] and 'stopped' in results[STOP_TASK]['msg'], results[STOP_TASK]
    assert 'nothing to do' in results['Point of no return']['msg']
    assert 'nothing to do' in results['Post-deployment migrations']['msg']

    events = audit_events(cluster, offset)
    created = [e for e in events if e['verb'] in ('create', 'patch') and e['objectRef'].get('resource') == 'jobs'
               and e['objectRef'].get('name') == JOB]
    assert created, [(e['verb'], e['objectRef']) for e in events]
    job_created = created[0]['stageTimestamp']
    scaled = [e for e in events if e['objectRef'].get('subresource') == 'scale']
    assert sorted(e['objectRef']['name'] for e in scaled) == ['mastodon-sidekiq-all', 'mastodon-streaming',
                                                              'mastodon-web'], scaled
    assert max(e['stageTimestamp'] for e in scaled) < job_created
    # every pod of the old version was deleted (its last delete: the kubelet's final one) before the Job existed
    deleted = {}
    for event in events:
        if event['verb'] == 'delete' and event['objectRef'].get('resource') == 'pods':
            deleted[event['objectRef']['name']] = event['stageTimestamp']
    assert set(old_pods) <= set(deleted), (old_pods, sorted(deleted))
    assert max(deleted[name] for name in old_pods) < job_created, (deleted, job_created)

    job = json.loads(cluster.kube.kubectl('-n', cluster.namespace, 'get', 'job', JOB, '-o', 'json').stdout)
    container = job['spec']['template']['spec']['containers'][0]
    script = container['command'][-1]
    assert 'unset SKIP_POST_DEPLOYMENT_MIGRATIONS' in script and 'export SKIP_POST_DEPLOYMENT_MIGRATIONS' not in script
    assert 'SKIP_POST_DEPLOYMENT_MIGRATIONS' not in [e['name'] for e in container.get('env') or []]
    assert job['status'].get('succeeded') == 1
    images = cluster.images()
    assert images and all(any(':v4.7.6' in i for i in imgs) for imgs in images.values()), images
    deployments = json.loads(cluster.kube.kubectl('-n', cluster.namespace, 'get', 'deployments', '-o', 'json').stdout)
    replicas = dict((d['metadata']['name'], (d['spec']['replicas'], d['status'].get('readyReplicas')))
                    for d in deployments['items'])
    assert replicas['mastodon-web'] == (2, 2) and replicas['mastodon-streaming'] == (2, 2), replicas

    offset = cluster.audit_offset()
    done, data = runner.run(runner.variables('v4.7.6', config_upgrade_with_downtime=True), callback='json')
    assert done.returncode == 0, failures(done, data)
    assert not dict(tasks_of(data))[STOP_TASK]['changed']
    assert not [e for e in audit_events(cluster, offset) if e['objectRef'].get('subresource') == 'scale']


def test_the_one_task_deploy_stops_too_and_records_every_migration_as_done(setup):
    """mastodon_deploy in one task (step all, Deploy.apply): the same stop before the Job; its post-deployment Job
    then finds nothing left, and the record says the post-deployment migrations are done (the upgrade guard must
    never take them for pending: going back is a restore now)."""
    runner, cluster, full = setup
    done, data = runner.run(runner.variables('v4.6.9'), playbook=full, callback='json')
    assert done.returncode == 0, failures(done, data)
    set_schema(cluster, BELOW_4_7_FLOOR)
    old_pods = workload_pods(cluster)
    offset = cluster.audit_offset()
    done, data = runner.run(runner.variables('v4.7.6', config_upgrade_with_downtime=True), playbook=full,
                            callback='json')
    assert done.returncode == 0, failures(done, data)
    events = audit_events(cluster, offset)
    job_created = [e['stageTimestamp'] for e in events if e['objectRef'].get('resource') == 'jobs'
                   and e['objectRef'].get('name') == JOB][0]
    deleted = dict((e['objectRef']['name'], e['stageTimestamp']) for e in events
                   if e['verb'] == 'delete' and e['objectRef'].get('resource') == 'pods')
    assert set(old_pods) <= set(deleted) and max(deleted[name] for name in old_pods) < job_created
    current = cluster.record()['current']
    assert (current['version'], current['post_migrations'], current['outcome']) == ('v4.7.6', 'done', 'ok'), current
