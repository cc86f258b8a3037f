# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/rollback.yml against the local Kubernetes API server and the DigitalOcean API stand-in
(plugins/module_utils/_deploy/rollback.py):

(a) v4.6.5 installed, v4.6.9 rolled out with its post-deployment migrations not run: the rollback brings the
    v4.6.5 images back on web, streaming and Sidekiq, records it (outcome rolled-back, the v4.6.9 entry kept in the
    history), runs no migration; a second run changes nothing and writes nothing (the API server's audit log);
(b) v4.6.9 -> v4.7.6 rolled out (a 4.7 pod ran): refused, naming the keypairs, nothing written;
(c) the post-deployment migrations of v4.6.9 ran: refused with the restore runbook, nothing written.

The deploys run fediops.mastodon.mastodon_deploy in one task (step all), whose record keeping is the deploy
record's (RecordKeeper); `components` without migrate-post leaves the post-deployment migrations pending.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import time

import pytest

from test_deploy_steps import COLLECTION_ROOT, Runner, failures, tasks_of

ROLLBACK = os.path.join(COLLECTION_ROOT, 'playbooks', 'rollback.yml')
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'molecule', 'default', 'files'))
from audit_writes import writes as audit_writes  # noqa: E402  pylint: disable=wrong-import-position

WITHOUT_POST = ['config', 'migrate-pre', 'web', 'streaming', 'sidekiq']


def one_task_playbook(directory, components=None):
    """A play of one mastodon_deploy task (step all), with `components` (None: every one)."""
    path = os.path.join(directory, 'deploy-%s.yml' % ('all' if components is None else 'no-post'))
    task = {'fediops.mastodon.mastodon_deploy': {'components': components} if components else {}}
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump([{'name': 'deploy', 'hosts': 'localhost', 'gather_facts': False,
                    'tasks': [dict(task, name='Deploy')]}], handle)
    return path


class Cluster(object):
    def __init__(self, kube, namespace):
        self.kube, self.namespace = kube, namespace
        self.audit_log = os.path.join(os.path.dirname(os.path.abspath(kube.kubeconfig)), 'logs', 'audit.log')

    def audit_offset(self):
        return os.path.getsize(self.audit_log)

    def writes_since(self, offset):
        time.sleep(0.5)  # the audit backend writes each event as its request completes
        with open(self.audit_log, 'rb') as handle:
            handle.seek(offset)
            lines = handle.read().decode('utf-8', 'replace').splitlines()
        return audit_writes(lines, self.namespace)

    def record(self):
        out = self.kube.kubectl('-n', self.namespace, 'get', 'configmap', 'mastodon-deploy-record', '-o', 'json').stdout
        return json.loads(json.loads(out)['data']['record.json'])

    def images(self):
        """{Deployment: [container images]} of web, streaming and every Sidekiq Deployment."""
        out = json.loads(self.kube.kubectl('-n', self.namespace, 'get', 'deployments', '-o', 'json').stdout)
        return dict((d['metadata']['name'], sorted(c['image'] for c in d['spec']['template']['spec']['containers']))
                    for d in out['items'])

    def jobs(self):
        return sorted(self.kube.kubectl('-n', self.namespace, 'get', 'jobs', '-o', 'name').stdout.split())


def rollback(runner, variables):
    done, data = runner.run(variables, playbook=ROLLBACK, callback='json')
    results = dict(tasks_of(data)) if data else {}
    return done, data, results.get('Roll back to the previous version') or {}


@pytest.fixture
def setup(kube_cluster, do_standin_session, tmp_path):
    do_standin_session.reset()
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path), 'rollback-' + secrets.token_hex(3))
    cluster = Cluster(kube_cluster, runner.namespace)
    assert os.path.isfile(cluster.audit_log), 'the local cluster has no audit log at %s' % cluster.audit_log
    yield runner, cluster, one_task_playbook(str(tmp_path)), one_task_playbook(str(tmp_path), WITHOUT_POST)
    kube_cluster.kubectl('delete', 'namespace', runner.namespace, '--wait=false', check=False)


def deploy(runner, playbook, version):
    done, data = runner.run(runner.variables(version), playbook=playbook, callback='json')
    assert done.returncode == 0, failures(done, data)


def test_a_patch_upgrade_with_post_migrations_pending_rolls_back_and_a_re_run_changes_nothing(setup):
    runner, cluster, full, no_post = setup
    deploy(runner, full, 'v4.6.5')
    before = cluster.images()
    deploy(runner, no_post, 'v4.6.9')
    upgraded = cluster.images()
    assert upgraded != before and all(any(':v4.6.9' in i for i in images) for images in upgraded.values()), upgraded
    assert cluster.record()['current']['post_migrations'] == 'pending'
    jobs = cluster.jobs()

    # --check --diff: what would change, nothing written
    offset = cluster.audit_offset()
    done, data = runner.run(runner.variables('v4.6.9'), ['--check', '--diff'], playbook=ROLLBACK, callback='json')
    assert done.returncode == 0, failures(done, data)
    assert dict(tasks_of(data))['Roll back to the previous version']['changed']
    assert [w for w in cluster.writes_since(offset) if w['resource'] != 'leases'] == []
    assert cluster.images() == upgraded

    done, data, result = rollback(runner, runner.variables('v4.6.9'))
    assert done.returncode == 0, failures(done, data)
    assert result['changed'] and result['version'] == 'v4.6.5', result
    assert cluster.images() == before
    record = cluster.record()
    current = record['current']
    assert (current['version'], current['outcome'], current['rolled_back_from']) == ('v4.6.5', 'rolled-back', 'v4.6.9')
    assert record['history'][0]['version'] == 'v4.6.9' and record['history'][0]['post_migrations'] == 'pending'
    assert cluster.jobs() == jobs  # no migration ran, none was pruned

    offset = cluster.audit_offset()
    done, data, result = rollback(runner, runner.variables('v4.6.9'))
    assert done.returncode == 0, failures(done, data)
    assert not result['changed'], result
    # the deploy's Lease (taken and released around every run) is the lock, not a change of the deployment
    assert [w for w in cluster.writes_since(offset) if w['resource'] != 'leases'] == []
    assert cluster.images() == before


def test_back_below_4_7_after_a_4_7_pod_is_refused_and_writes_nothing(setup):
    runner, cluster, full, no_post = setup
    deploy(runner, full, 'v4.6.9')
    # the guide's plan of the 4.7 upgrade (docs/docsite/rst/guide_upgrade.rst, "4.6 to 4.7, step by step"):
    # playbooks/deploy.yml --check --diff writes nothing
    offset = cluster.audit_offset()
    done, data = runner.run(runner.variables('v4.7.6'), ['--check', '--diff'], callback='json')
    assert done.returncode == 0, failures(done, data)
    assert [w for w in cluster.writes_since(offset) if w['resource'] != 'leases'] == []
    deploy(runner, no_post, 'v4.7.6')
    serving = cluster.images()
    offset = cluster.audit_offset()
    done, data, result = rollback(runner, runner.variables('v4.7.6'))
    assert done.returncode != 0
    assert 'keypairs' in result['msg'] and 'app/models/account.rb:536,559-564' in result['msg'], result
    assert 'config_mastodon_version' in result['variables']
    assert cluster.writes_since(offset) == []
    assert cluster.images() == serving


def test_after_the_post_migrations_the_rollback_points_to_the_restore(setup):
    runner, cluster, full, dummy = setup
    deploy(runner, full, 'v4.6.5')
    deploy(runner, full, 'v4.6.9')
    assert cluster.record()['current']['post_migrations'] == 'done'
    offset = cluster.audit_offset()
    done, data, result = rollback(runner, runner.variables('v4.6.9'))
    assert done.returncode != 0
    assert 'post-deployment migrations' in result['msg'] and 'Before the point of no return: backups' in result['msg']
    assert 'new database cluster from the backup' in result['msg'], result
    assert cluster.writes_since(offset) == []


def test_a_failed_rollback_keeps_the_newer_version_serving_says_so_and_a_re_run_finishes_it(setup):
    """The rollback's web pods crash (sim.fediops.test/fail): the wait fails, the v4.6.9 pods keep serving (a
    rolling update never takes a ready pod down before its replacement is ready), the record says failed; the
    next run (without the fault) goes on to v4.6.5, not to the abandoned v4.6.9."""
    runner, cluster, full, no_post = setup
    deploy(runner, full, 'v4.6.5')
    before = cluster.images()
    deploy(runner, no_post, 'v4.6.9')
    failing = runner.variables('v4.6.9', config_pod_annotations={'sim.fediops.test/fail': 'true'}, web_wait_timeout=20)
    done, data, result = rollback(runner, failing)
    assert done.returncode != 0 and 'rollback to v4.6.5: web' in result['msg'], result
    current = cluster.record()['current']
    assert (current['version'], current['outcome'], current['rolled_back_from']) == ('v4.6.5', 'failed', 'v4.6.9')
    pods = json.loads(cluster.kube.kubectl('-n', cluster.namespace, 'get', 'pods', '-l',
                                           'app.kubernetes.io/component=web', '-o', 'json').stdout)['items']
    ready = [p['spec']['containers'][0]['image'] for p in pods
             if any(c['type'] == 'Ready' and c['status'] == 'True' for c in p['status'].get('conditions') or [])]
    assert len(ready) == 2 and all(image.endswith(':v4.6.9') for image in ready), ready

    done, data, result = rollback(runner, runner.variables('v4.6.9'))
    assert done.returncode == 0, failures(done, data)
    assert result['changed'] and result['version'] == 'v4.6.5'
    assert cluster.images() == before
    assert cluster.record()['current']['outcome'] == 'rolled-back'
