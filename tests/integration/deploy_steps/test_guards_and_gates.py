# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one-way doors of an upgrade, end to end through playbooks/deploy.yml (its plan and visible steps) against
the local Kubernetes API server and the DigitalOcean API stand-in; "no write" is read from the API server's audit
log (molecule/default/files/audit_writes.py: create/update/patch/delete by anyone but the cluster's controllers,
dry-runs left out).

1. The point of no return (docs/dev/ARCHITECTURE.md section 3): an existing database deployed into a new namespace
   with its own secrets (config_secrets: its pre-deployment Job carries no new-keys signal, so nothing proves the
   database was empty) while DigitalOcean lists no backup of it is refused there, naming the variable, no
   post-deployment Job; the same deploy with migrations_post: hold leaves the
   post-deployment migrations pending (mastodon_status says so); `--tags post-migrations -e migrations_post=run`
   then asks DigitalOcean for the PostgreSQL cluster's backups: stale, none, or an API error -> refused, naming
   the variable, no post-deployment Job; fresh -> the Job runs and the record keeps the restore point.
2. The upgrade guard reads the deploy record those steps wrote: going back to 4.5 after 4.6's post-deployment
   migrations is refused before any write. The other states the guard refuses (a 4.7 pod has run, then 4.6; a
   skipped minor 4.5 -> 4.7; a schema below 4.7's zero-downtime floor) are written into the record ConfigMap
   directly, which is faithful: the guard reads nothing else.
3. A pre-deployment migration that runs 20 minutes (the pod simulator's sim.fediops.test/delay-seconds) with
   migrations_wait_timeout: 60: the playbook ends after about 60 s, rc 0, saying "still running" and where it
   is; no later step applied anything. The re-run re-attaches to the same Job and goes on (the Job is shortened
   meanwhile, as the simulator allows); never two Jobs of one phase. An explicit existing database (its secrets
   given, as its log's schema line says it holds a schema): the gate wants
   migrations_backup_confirmed_at (refused without it, naming it; the post-deployment migrations run with it).
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import re
import secrets
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_deploy_steps import COLLECTION_ROOT, STEP_TASKS, Runner, failures, ran, tasks_of  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'molecule', 'default', 'files'))
from audit_writes import writes as audit_writes  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils import _status  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import guards  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import record  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient  # noqa: E402

PLAN = STEP_TASKS[0]
LATER = ['Web', 'Streaming', 'Sidekiq', 'Point of no return', 'Post-deployment migrations']
# What the migration Jobs' log says (the script's schema line, then Rails' migration lines): the simulator reveals
# line i of n at i/n of the pod's run, so the long index build fills the rest of the 20 minutes.
LOG = ['fediops: schema_version=20250201000000',
       '== 20260601000000 AddContent: migrating =====================================',
       '== 20260601000000 AddContent: migrated (0.0100s) ============================',
       '== 20260601000100 IndexContent: migrating ==================================='] + ['-- add_index'] * 400
STATUS_PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Status
      fediops.mastodon.mastodon_status:
        name: mastodon
        namespace: "{{ config_namespace }}"
'''


class Audit(object):
    def __init__(self, kube, namespace):
        self.path = os.path.join(str(kube.state_dir), 'logs', 'audit.log')
        assert os.path.exists(self.path), 'the local cluster runs without its audit log'
        self.namespace = namespace

    def mark(self):
        return os.path.getsize(self.path)

    def writes(self, offset):
        time.sleep(1)  # the audit backend writes in batches
        with open(self.path, 'rb') as handle:
            handle.seek(offset)
            lines = handle.read().decode('utf-8', 'replace').splitlines()
        return audit_writes(lines, self.namespace)


def refused(done, data, task=PLAN):
    """The failed task's result; it must be `task`."""
    assert done.returncode != 0, 'accepted: %s' % failures(done, data)
    failed = [(name, result) for name, result in tasks_of(data) if result.get('failed')]
    assert [name for name, dummy in failed] == [task], failed
    return failed[0][1]


def current_record(runner):
    return (record.read_record(KubeClient(kubeconfig=runner.kube.kubeconfig), runner.namespace, 'mastodon') or {}).get('current')


def set_record(runner, current, history=()):
    """The record ConfigMap as a deploy would have left it (record.write_record: the same object)."""
    record.write_record(KubeClient(kubeconfig=runner.kube.kubeconfig), runner.namespace, 'mastodon',
                        {'app.kubernetes.io/instance': 'mastodon'}, {'current': current, 'history': list(history)})


def entry(version, lines_run, post='done', phase='post', schema=None):
    return {'version': version, 'images': {'web': 'ghcr.io/mastodon/mastodon:' + version}, 'phase': phase,
            'post_migrations': post, 'previous_version': None, 'schema_version': schema,
            'started_at': '2026-12-01T10:00:00Z', 'updated_at': '2026-12-01T10:20:00Z', 'lines_run': lines_run,
            'outcome': 'ok'}


def jobs(runner):
    return runner.kube.kubectl('-n', runner.namespace, 'get', 'jobs', '-o', 'name').stdout.split()


def test_backups_at_the_point_of_no_return_then_the_upgrade_guard(kube_cluster, do_standin_session, tmp_path):
    do_standin_session.reset()
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path), 'gates-' + secrets.token_hex(3))
    audit = Audit(kube_cluster, runner.namespace)
    figures = []
    pg = do_standin_session.cluster('mastodon-pg')['id']
    answers = do_standin_session.fixtures['backups']
    stale = do_standin_session.fixtures['backups'][do_standin_session.cluster('staging-pg')['id']]
    none = answers[do_standin_session.cluster('filler-00')['id']]

    def standin(answer=None, fault=None):
        """Another stand-in whose mastodon-pg lists other backups (or answers with an error): the same cluster, so
        the deploy's objects are the same; only what DigitalOcean says of its backups differs."""
        fixtures = copy.deepcopy(do_standin_session.fixtures)
        if answer is not None:
            fixtures['backups'][pg] = answer
        return do_standin_session.spawn(*([fault] if fault else []), fixtures=fixtures)

    try:
        started = time.monotonic()
        # Not a first install by the namespace alone: the database and its secrets are given (an instance moved here).
        given = mconfig.fill_secrets({})[0]
        given = dict((k, given[k]) for k in guards.KEPT_KEYS)
        # Its first deploy here, while DigitalOcean lists no backup of it: refused at the point of no return (the
        # namespace held no instance, but nothing proves the database was empty).
        api = standin(none)
        try:
            done, data = runner.run(runner.variables('v4.6.5', config_secrets=given,
                                                     config_do_api_base_url=api.base_url), callback='json')
        finally:
            api.stop()
        gate = refused(done, data, 'Point of no return')
        assert gate['variables'] == ['config_do_database_cluster'] and 'has no backup to go back to' in gate['msg'], gate
        assert [j for j in jobs(runner) if 'migrate-post' in j] == []
        assert not [value for value in given.values() if value in done.stdout + done.stderr]
        figures.append('first deploy here of a database given with its secrets, no backup listed: refused, %s'
                       % gate['msg'][:300])
        done, data = runner.run(runner.variables('v4.6.5', migrations_post='hold', config_secrets=given),
                                callback='json')
        assert done.returncode == 0, failures(done, data)
        figures.append('install v4.6.5 of a database given with its secrets, migrations_post hold: %.1f s'
                       % (time.monotonic() - started))
        assert [j for j in jobs(runner) if 'migrate-post' in j] == []
        assert [j for j in jobs(runner) if 'migrate-pre' in j] == ['job.batch/mastodon-migrate-pre-v4-6-5']
        assert current_record(runner)['schema_loaded'] is False
        done, data = runner.run(dict(runner.variables(), config_namespace=runner.namespace), playbook=_play(tmp_path),
                                callback='json')
        status = dict(tasks_of(data))['Status']
        assert status['deploy_record']['post_migrations'] == 'held' and status['deploy_record']['post_migrations_pending']
        pending = [line for line in status['table'] if line.startswith('PENDING')]
        assert pending and '--tags post-migrations -e migrations_post=run' in pending[0], status['table']
        figures.append('mastodon_status: %s' % pending[0])

        later = runner.variables('v4.6.5', migrations_post='run')
        for label, api, variable, words in (
                ('stale (3 days)', standin(stale), 'migrations_backup_max_age', 'older than migrations_backup_max_age'),
                ('none', standin(none), 'config_do_database_cluster', 'has no backup to go back to'),
                ('API error 403', standin(fault={'kind': 'status', 'status': 403, 'path': '/backups$',
                                                 'message': 'You are not authorized to perform this operation'}),
                 'config_do_database_cluster', 'could not be read')):
            try:
                done, data = runner.run(dict(later, config_do_api_base_url=api.base_url), ['--tags', 'post-migrations'],
                                        callback='json')
            finally:
                api.stop()
            gate = refused(done, data, 'Point of no return')
            assert gate['variables'] == [variable], gate
            assert words in gate['msg'] and 'refusing the post-deployment migrations' in gate['msg'], gate['msg']
            if label.startswith('stale'):
                assert "doctl databases create mastodon-pg-restored-" in gate['msg'], gate['msg']
                assert '"backup_restore": {"database_name": "mastodon-pg"' in gate['msg'], gate['msg']
            assert 'Post-deployment migrations' not in ran(data)
            assert [j for j in jobs(runner) if 'migrate-post' in j] == []
            assert do_standin_session.token not in done.stdout + done.stderr
            figures.append('backups %s: refused, %s named: %s' % (label, variable, gate['msg'][:400]))

        done, data = runner.run(later, ['--tags', 'post-migrations'], callback='json')
        assert done.returncode == 0, failures(done, data)
        results = dict(tasks_of(data))
        assert 'restore point: backup of \'mastodon-pg\'' in results['Point of no return']['msg']
        assert 'doctl databases create mastodon-pg-restored-' in results['Point of no return']['msg']
        assert results['Post-deployment migrations']['changed']
        assert len([j for j in jobs(runner) if 'migrate-post' in j]) == 1
        stored = current_record(runner)
        newest = max(b['created_at'] for b in answers[pg]['backups'])
        assert (stored['phase'], stored['post_migrations'], stored['outcome'], stored['lines_run']) == \
            ('post', 'done', 'ok', ['4.6'])
        assert stored['restore_point'] == {'source': 'digitalocean', 'cluster': 'mastodon-pg', 'created_at': newest}
        shown = _status.collect(KubeClient(kubeconfig=kube_cluster.kubeconfig), runner.namespace, 'mastodon')
        assert shown['deploy_record']['post_migrations_pending'] is False
        figures.append('backups fresh: post-deployment Job ran; record: %s' % json.dumps(stored, sort_keys=True))

        # The upgrade guard, from the record the steps wrote: refused in the plan, nothing written.
        cases = [('downgrade after 4.6\'s post-deployment migrations (real chain)', None, 'v4.5.20',
                  'cannot go back to 4.5: the post-deployment migrations of 4.6 (v4.6.5) have run'),
                 ('4.7 -> 4.6 after a 4.7 pod ran (v4.7.6 deployed with post held)',
                  ([entry('v4.7.6', ['4.6', '4.7'], post='held', phase='rollout')], [stored]), 'v4.6.9',
                  'cannot go back below 4.7: 4.7 pods have run'),
                 ('4.5 -> 4.7 skips 4.6', ([entry('v4.5.20', ['4.5'])], []), 'v4.7.6', '4.7 would skip 4.6'),
                 ('schema below 4.7\'s floor', ([entry('v4.6.9', ['4.6'], schema='20240101000000')], []), 'v4.7.6',
                  'the database schema (20240101000000) is older than 4.7\'s zero-downtime floor (20241007071624)')]
        for label, state, target, words in cases:
            if state is not None:
                set_record(runner, state[0][0], state[1])
            offset = audit.mark()
            started = time.monotonic()
            done, data = runner.run(runner.variables(target), callback='json')
            took = time.monotonic() - started
            plan = refused(done, data)
            assert plan['variables'] == ['config_mastodon_version'], plan
            assert words in plan['msg'], plan['msg']
            assert ran(data) == [PLAN, STEP_TASKS[-1]], ran(data)
            written = audit.writes(offset)
            assert written == [], written
            figures.append('guard %s: %s refused in %.1f s, writes in the audit log: %d; %s'
                           % (label, target, took, len(written), plan['msg'][:300]))
    finally:
        print('\n' + '\n'.join(figures))
        kube_cluster.kubectl('delete', 'namespace', runner.namespace, '--wait=false', check=False)


def _play(tmp_path):
    path = os.path.join(str(tmp_path), 'status.yml')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(STATUS_PLAY)
    return path


def test_a_long_pre_migration_ends_the_playbook_and_the_rerun_re_attaches(kube_cluster, do_standin_session, tmp_path):
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path), 'longsteps-' + secrets.token_hex(3))
    audit = Audit(kube_cluster, runner.namespace)
    offset = audit.mark()
    figures = []
    # An existing database (the log below finds its schema) with its own secrets: no new-keys signal, so the
    # point of no return asks for a backup.
    given = mconfig.fill_secrets({})[0]
    explicit = {'config_secrets': dict((k, given[k]) for k in guards.KEPT_KEYS),
                'config_database_source': 'explicit', 'config_db_host': 'db.example',
                'config_db_password': 'pw-' + secrets.token_hex(8),
                'config_redis_url': 'rediss://default:pw@redis.example:25061',
                'config_do_database_cluster': '', 'config_do_redis_cluster': '',
                'migrations_wait_timeout': 60,
                'migrations_pod_annotations': {'sim.fediops.test/delay-seconds': '1200', 'sim.fediops.test/log': '\n'.join(LOG)}}
    variables = runner.variables('v4.6.5', **explicit)
    client = KubeClient(kubeconfig=kube_cluster.kubeconfig)
    try:
        started = time.monotonic()
        done, data = runner.run(variables, callback='json')
        first = time.monotonic() - started
        assert done.returncode == 0, failures(done, data)
        results = dict(tasks_of(data))
        pre = results['Pre-deployment migrations']
        assert pre['migrations_running'] is True and not pre.get('failed')
        assert re.search(r'is still running for (\d+ s|1 min)', pre['msg']) and 'now at migration 20260601000100 IndexContent' in pre['msg']
        assert 'run the deploy again later: it re-attaches' in pre['msg'], pre['msg']
        assert pre['msg'] in (pre.get('warnings') or []), pre
        for name in LATER:
            assert results[name]['changed'] is False and results[name]['migrations_running'] is True, (name, results[name])
            assert results[name]['msg'].startswith('not started: the pre-deployment migrations are still running')
        assert 58 <= first <= 120, first
        deployments = kube_cluster.kubectl('-n', runner.namespace, 'get', 'deployments', '-o', 'name').stdout.split()
        assert deployments == [], deployments  # no later step applied anything
        stored = current_record(runner)
        assert (stored['phase'], stored['migrations_running'], stored['outcome'], stored['lines_run']) == \
            ('config', 'pre', 'running', [])
        shown = _status.render_table(_status.collect(client, runner.namespace, 'mastodon'))
        running = [line for line in shown if line.startswith('RUNNING')]
        assert running and running[0].startswith('RUNNING      pre-deployment migrations still running'), shown
        figures.append('first run: rc %d after %.1f s (migrations_wait_timeout 60); pre step: %s; later steps: %s'
                       % (done.returncode, first, pre['msg'], results['Web']['msg']))
        figures.append('mastodon_status: %s' % running[0])

        stop = threading.Event()

        def shorten():
            # 10 s into the re-run the migration ends (the simulator's delay, shortened); later pods (the
            # post-deployment Job's) get the same annotations and are shortened as soon as they exist.
            stop.wait(10)
            while not stop.is_set():
                kube_cluster.kubectl('annotate', 'pods', '--all', '-n', runner.namespace, '--overwrite',
                                     'sim.fediops.test/delay-seconds=0', check=False)
                stop.wait(2)

        shortener = threading.Thread(target=shorten)
        shortener.start()
        try:
            started = time.monotonic()
            # migrations_backup_confirmed_at is empty: the re-run goes on, rolls out, and stops at the gate
            done, data = runner.run(variables, callback='json')
            second = time.monotonic() - started
            gate = refused(done, data, 'Point of no return')
            results = dict(tasks_of(data))
            assert results['Pre-deployment migrations']['objects'] == [], results['Pre-deployment migrations']
            assert 'migrations_running' not in results['Pre-deployment migrations']
            assert results['Web']['changed'] and results['Sidekiq']['changed']
            assert gate['variables'] == ['migrations_backup_confirmed_at'], gate
            assert 'migrations_backup_confirmed_at' in gate['msg'] and 'not DigitalOcean' in gate['msg'], gate['msg']
            stored = current_record(runner)
            assert (stored['phase'], stored['migrations_running'], stored['outcome'], stored['lines_run'],
                    stored['schema_version']) == ('rollout', None, 'failed', ['4.6'], '20260601000000')
            figures.append('re-run: re-attached, the rollout done, refused at the gate after %.1f s: %s'
                           % (second, gate['msg'][:300]))

            confirmed = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)) \
                .strftime('%Y-%m-%dT%H:%M:%SZ')
            started = time.monotonic()
            done, data = runner.run(dict(variables, migrations_backup_confirmed_at=confirmed),
                                    ['--tags', 'post-migrations'], callback='json')
            third = time.monotonic() - started
            assert done.returncode == 0, failures(done, data)
            results = dict(tasks_of(data))
            assert 'the backup confirmed by migrations_backup_confirmed_at' in results['Point of no return']['msg']
            assert results['Post-deployment migrations']['changed']
        finally:
            stop.set()
            shortener.join()
        stored = current_record(runner)
        assert (stored['phase'], stored['post_migrations'], stored['migrations_running'], stored['outcome']) == \
            ('post', 'done', None, 'ok')
        assert stored['restore_point'] == {'source': 'operator', 'created_at': confirmed}
        figures.append('with migrations_backup_confirmed_at and --tags post-migrations: done in %.1f s; record: %s'
                       % (third, json.dumps(stored, sort_keys=True)))

        written = [w for w in audit.writes(offset) if w['resource'] == 'jobs']
        created = {}
        for write in written:
            if write['verb'] in ('create', 'patch') and write['code'] == 201:
                phase = 'pre' if '-migrate-pre-' in write['name'] else 'post'
                created.setdefault(phase, []).append(write['name'])
        assert sorted(created) == ['post', 'pre'] and all(len(names) == 1 for names in created.values()), written
        assert not [w for w in written if w['verb'] in ('delete', 'deletecollection')], written
        figures.append('Job writes (audit log): %s' % [(w['verb'], w['name'], w['code']) for w in written])
    finally:
        print('\n' + '\n'.join(figures))
        kube_cluster.kubectl('delete', 'namespace', runner.namespace, '--wait=false', check=False)
