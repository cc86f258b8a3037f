# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy record (plugins/module_utils/_deploy/record.py): its entries, its ConfigMap, and RecordKeeper."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import record as rec
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import APPLY_PATCH

T0 = datetime.datetime(2026, 12, 5, 17, 0, tzinfo=datetime.timezone.utc)
IMAGES = {'web': 'ghcr.io/mastodon/mastodon:v4.7.6', 'streaming': 'ghcr.io/mastodon/mastodon-streaming:v4.7.6'}


class _Client(object):
    """GET and server-side apply of one ConfigMap, kept in memory."""

    def __init__(self, data=None, status=None):
        self.obj = {'data': data} if data is not None else None
        self.status = status
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/api/v1/namespaces/%s/configmaps/%s' % (namespace, name)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append((method, path, dict(query or {}), body, content_type))
        if self.status:
            return self.status, {'kind': 'Status', 'message': 'forbidden'}
        if method == 'GET':
            return (200, self.obj) if self.obj is not None else (404, {})
        self.obj = body
        return 200, body


def test_read_absent_and_present():
    assert rec.read_record(_Client(), 'ns', 'masto') is None
    stored = {'current': {'version': 'v4.7.6'}, 'history': []}
    assert rec.read_record(_Client({'record.json': json.dumps(stored)}), 'ns', 'masto') == stored
    client = _Client({'record.json': '{not json'})
    with pytest.raises(rec.RecordError, match='masto-deploy-record: record.json is not JSON'):
        rec.read_record(client, 'ns', 'masto')
    with pytest.raises(rec.RecordError, match='HTTP 403'):
        rec.read_record(_Client(status=403), 'ns', 'masto')


def test_start_entry_pushes_the_previous_one_to_history():
    first = rec.start_entry(None, 'v4.6.9', {'web': 'a'}, T0)
    assert first['current']['version'] == 'v4.6.9' and first['current']['phase'] == 'config'
    assert first['current']['previous_version'] is None and first['history'] == []
    done = rec.set_phase(first, 'post', post_migrations='done', schema_version='20260601000000', lines_run=['4.6'])
    second = rec.start_entry(done, 'v4.7.6', IMAGES, T0)
    assert second['current']['previous_version'] == 'v4.6.9'
    assert second['current']['schema_version'] == '20260601000000'  # carried until a Job tells more
    assert second['current']['phase'] == 'config' and second['current']['lines_run'] == []
    assert second['history'][0]['version'] == 'v4.6.9' and second['history'][0]['post_migrations'] == 'done'
    assert first['current']['phase'] == 'config'  # pure: the input is unchanged


def test_a_rerun_of_the_same_version_continues_its_entry():
    started = rec.set_phase(rec.start_entry(None, 'v4.7.6', IMAGES, T0), 'rollout', lines_run=['4.7'], outcome='failed')
    again = rec.start_entry(started, 'v4.7.6', dict(IMAGES), T0 + datetime.timedelta(hours=1))
    assert again['history'] == [] and again['current']['phase'] == 'rollout'
    assert again['current']['outcome'] == 'running' and again['current']['updated_at'] == '2026-12-05T18:00:00Z'


def test_history_is_capped():
    record = None
    for n in range(30):
        record = rec.start_entry(record, 'v4.6.%d' % n, {}, T0)
    assert len(record['history']) == rec.HISTORY_LIMIT and record['history'][0]['version'] == 'v4.6.28'


def test_set_phase_never_moves_back_and_checks_its_fields():
    record = rec.set_phase(rec.start_entry(None, 'v4.7.6', IMAGES, T0), 'rollout')
    assert rec.set_phase(record, 'pre')['current']['phase'] == 'rollout'
    assert rec.set_phase(record, 'post')['current']['phase'] == 'post'
    with pytest.raises(ValueError, match='phase must be one of'):
        rec.set_phase(record, 'web')
    with pytest.raises(ValueError, match='unknown record field'):
        rec.set_phase(record, 'pre', password='x')
    with pytest.raises(ValueError, match='post_migrations must be one of'):
        rec.set_phase(record, 'post', post_migrations='maybe')
    with pytest.raises(ValueError, match='start_entry first'):
        rec.set_phase({'current': None}, 'pre')
    kept = rec.set_phase(rec.set_phase(record, 'pre', schema_version='20260728145403'), 'pre', schema_version=None)
    assert kept['current']['schema_version'] == '20260728145403'
    lines = rec.set_phase(rec.set_phase(record, 'rollout', lines_run=['4.10']), 'rollout', lines_run=['4.9'])
    assert lines['current']['lines_run'] == ['4.9', '4.10']


def test_mark_line_run():
    record = rec.mark_line_run(rec.start_entry(None, 'v4.7.6@sha256:' + 'a' * 64, IMAGES, T0))
    assert record['current']['lines_run'] == ['4.7'] and record['current']['phase'] == 'config'
    assert rec.mark_line_run(rec.start_entry(None, 'nightly', {}, T0))['current']['lines_run'] == []


def test_write_record_applies_a_configmap_outside_every_applyset_without_unknown_keys():
    client = _Client()
    record = rec.start_entry(None, 'v4.7.6', IMAGES, T0)
    record['current']['DB_PASS'] = 'hunter2'  # a mistake in a caller: never written
    record['history'] = [{'version': 'v4.6.9', 'SECRET_KEY_BASE': 'x'}]
    rec.write_record(client, 'ns', 'masto', {'app.kubernetes.io/instance': 'masto'}, record)
    method, path, query, body, content_type = client.calls[-1]
    assert (method, path, content_type) == ('PATCH', '/api/v1/namespaces/ns/configmaps/masto-deploy-record', APPLY_PATCH)
    assert query == {'fieldManager': 'fediops.mastodon', 'force': 'true'}
    assert body['metadata']['labels'] == {'app.kubernetes.io/instance': 'masto'}
    assert not any(key.startswith('applyset.kubernetes.io') for key in body['metadata']['labels'])
    text = body['data']['record.json']
    assert 'hunter2' not in text and 'SECRET_KEY_BASE' not in text and 'DB_PASS' not in text
    assert json.loads(text)['current']['version'] == 'v4.7.6'
    assert rec.read_record(client, 'ns', 'masto')['history'] == [{'version': 'v4.6.9'}]
    rec.write_record(client, 'ns', 'masto', {}, record, check_mode=True)
    assert client.calls[-1][2]['dryRun'] == 'All'
    with pytest.raises(rec.RecordError, match='HTTP 403: forbidden'):
        rec.write_record(_Client(status=403), 'ns', 'masto', {}, record)


def _job_log(text):
    return lambda job: text


def test_keeper_through_a_whole_deploy():
    client = _Client()
    log = 'fediops: schema_version=20260601000000\n== 20260728145403 UpdateAccountSummariesToVersion3: migrated (1.0s) ==\n'
    keeper = rec.RecordKeeper(client, 'ns', 'masto', {}, None, 'v4.7.6', IMAGES, lambda: T0, job_log=_job_log(log))
    job = [{'kind': 'Job', 'metadata': {'name': 'masto-migrate-pre-v4-7-6', 'namespace': 'ns'}}]
    keeper.before('config')
    assert client.calls == []  # the namespace may not exist before config
    keeper.after('config', {})
    keeper.before('migrate-pre')
    keeper.after('migrate-pre', {}, job)
    assert keeper.record['current']['phase'] == 'pre'
    assert keeper.record['current']['schema_version'] == '20260728145403'
    assert keeper.record['current']['schema_loaded'] is False  # its Job had no new-keys signal: an upgrade
    keeper.before('web')
    assert keeper.record['current']['lines_run'] == ['4.7']  # before any 4.7 pod
    for component in ('web', 'streaming', 'sidekiq'):
        keeper.after(component, {})
    assert keeper.record['current']['phase'] == 'rollout'
    keeper.after('migrate-post', {}, job)
    keeper.finish('ok')
    stored = rec.read_record(client, 'ns', 'masto')['current']
    assert (stored['phase'], stored['post_migrations'], stored['outcome']) == ('post', 'done', 'ok')


def test_keeper_records_a_first_installs_schema_load():
    """A pre-deployment Job with the new-keys signal that succeeded loaded the schema into an empty database (its
    script refuses one that holds a schema): the entry says so, which the next plan and the gate read."""
    client = _Client()
    keeper = rec.RecordKeeper(client, 'ns', 'masto', {}, None, 'v4.7.6', IMAGES, lambda: T0, job_log=_job_log(''))
    job = {'kind': 'Job', 'metadata': {'name': 'masto-migrate-pre-v4-7-6-new-keys', 'namespace': 'ns'},
           'spec': {'template': {'spec': {'containers': [
               {'name': 'migrate', 'env': [{'name': _migrations.FRESH_SECRETS_VARIABLE, 'value': 'true'}]}]}}}}
    keeper.after('config', {})
    keeper.after('migrate-pre', {'running_jobs': [{'name': 'x'}]}, [job])
    assert 'schema_loaded' not in keeper.record['current']  # still running: nothing proven yet
    keeper.after('migrate-pre', {}, [job])
    assert rec.read_record(client, 'ns', 'masto')['current']['schema_loaded'] is True


def test_keeper_with_a_pre_job_left_running():
    client = _Client()
    keeper = rec.RecordKeeper(client, 'ns', 'masto', {}, None, 'v4.7.6', IMAGES, lambda: T0, job_log=_job_log(''))
    keeper.after('config', {})
    keeper.after('migrate-pre', {'running_jobs': [{'name': 'x'}]}, [{'kind': 'Job', 'metadata': {}}])
    keeper.finish('running')
    stored = rec.read_record(client, 'ns', 'masto')['current']
    assert stored['phase'] == 'config' and stored['migrations_running'] == 'pre' and stored['outcome'] == 'running'
    assert stored['running_job'] == 'x'  # the next plan renders that Job as it is (guards.first_install_job)
    keeper.after('migrate-post', {'running_jobs': [{'name': 'y'}]}, [])
    assert keeper.record['current']['post_migrations'] == 'running'  # the guard treats it as done


def test_keeper_failed_never_hides_the_failure():
    keeper = rec.RecordKeeper(_Client(status=403), 'ns', 'masto', {}, None, 'v4.7.6', IMAGES, lambda: T0)
    keeper.started = True
    keeper.record = rec.start_entry(None, 'v4.7.6', IMAGES, T0)
    rec.keeper_failed(keeper)  # no exception


# ------------------------------------------------------------------ the deploy stops after a migration left running
class _FakeApplier(object):
    def __init__(self, component, result, calls):
        self.component, self._result, self.calls, self.diffs = component, result, calls, []

    def apply(self):
        self.calls.append(self.component)
        return self._result


def test_the_deploy_stops_cleanly_after_a_pre_job_left_running(monkeypatch):
    """No rollout after a pre-deployment Job still running: rc=0 (no exception), migrations_running, a message
    saying to re-run later; the record stays at the phase reached."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import plan
    client = _Client()
    calls = []
    ok = {'changed': False, 'pruned': [], 'objects': []}
    running = dict(ok, running_jobs=[{'name': 'masto-migrate-pre-v4-7-6', 'msg': 'Job ns/masto-migrate-pre-v4-7-6 is '
                                      'still running for 21 min, now at migration 20260728145403 X; it was left running'}])
    deploy = plan.Deploy({}, {}, plan.COMPONENTS, kube_client=lambda: client, now=T0)
    deploy.v = {'config_namespace': 'ns', 'config_name': 'masto'}
    deploy.model = {'labels': {}, 'version': 'v4.7.6', 'image': IMAGES['web'], 'streaming_image': IMAGES['streaming']}
    deploy.manifests = dict((component, []) for component in plan.COMPONENTS)
    deploy.state = {'record': None}
    deploy.appliers = [_FakeApplier(c, running if c == 'migrate-pre' else ok, calls) for c in plan.COMPONENTS]
    monkeypatch.setattr(plan.Deploy, 'result', lambda self, changed, components, diffs: {
        'changed': changed, 'components': components, 'warnings': self.warnings})
    out = deploy.apply()
    assert calls == ['config', 'migrate-pre']
    assert out['migrations_running'] is True and 'failed' not in out
    assert out['msg'].startswith('migrate-pre: Job ns/masto-migrate-pre-v4-7-6 is still running for 21 min, now at '
                                 'migration 20260728145403 X')
    assert 'Not started: web, streaming, sidekiq, migrate-post; run the deploy again later: it re-attaches' in out['msg']
    assert out['warnings'] == [out['msg']]
    assert out['components']['migrate-pre']['running_jobs'] == running['running_jobs']
    stored = rec.read_record(client, 'ns', 'masto')['current']
    assert (stored['phase'], stored['migrations_running'], stored['lines_run']) == ('config', 'pre', [])
