# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The status table's data from canned API answers. The objects have the shapes the Kubernetes API returns for
apps/v1 Deployments, batch/v1 Jobs and core/v1 Pods/Secrets (list items carry no kind; Jobs end with a Complete or
Failed condition; kube-controller-manager labels Job pods job-name=<job>)."""

from __future__ import annotations

import base64
import datetime
import json

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError
from ansible_collections.fediops.mastodon.plugins.module_utils._status import (
    collect, deploy_record_status, image_version, render_table)

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)
NS = 'social'
LABELS = {'app.kubernetes.io/instance': 'mastodon', 'app.kubernetes.io/name': 'mastodon'}


def ca_pem(days_left):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'test Project CA')])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=10))
            .not_valid_after(NOW + datetime.timedelta(days=days_left, hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def deployment(component, image, replicas=2, ready=2, updated=2, generation=1, deadline_exceeded=False):
    conditions = [{'type': 'Available', 'status': 'True'}]
    if deadline_exceeded:
        conditions.append({'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded',
                           'message': 'ReplicaSet "mastodon-web-2" has timed out progressing.'})
    selector = dict(LABELS, **{'app.kubernetes.io/component': component})
    return {'metadata': {'name': 'mastodon-' + component, 'namespace': NS, 'generation': generation,
                         'labels': selector},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': selector},
                     'template': {'metadata': {'labels': selector}, 'spec': {'containers': [{'image': image}]}}},
            'status': {'observedGeneration': generation, 'replicas': replicas, 'readyReplicas': ready,
                       'availableReplicas': ready, 'updatedReplicas': updated, 'conditions': conditions}}


def pod(component, image, phase='Running'):
    return {'metadata': {'labels': dict(LABELS, **{'app.kubernetes.io/component': component})},
            'spec': {'containers': [{'image': image}]}, 'status': {'phase': phase}}


def job(phase, version, created, outcome):
    slug = version.replace('.', '-')
    status = {'startTime': created}
    if outcome == 'succeeded':
        status.update(completionTime=created[:-3] + '09Z', conditions=[{'type': 'Complete', 'status': 'True'}])
    elif outcome == 'failed':
        status['conditions'] = [{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                                 'lastTransitionTime': created[:-3] + '05Z'}]
    labels = dict(LABELS, **{'app.kubernetes.io/component': 'migrations-' + phase, 'app.kubernetes.io/version': version})
    return {'metadata': {'name': 'mastodon-migrate-%s-%s' % (phase, slug), 'creationTimestamp': created,
                         'labels': labels},
            'spec': {'template': {'spec': {'containers': [{'image': 'ghcr.io/mastodon/mastodon:' + version}]}}},
            'status': status}


def failed_job_pod(job_name):
    return {'metadata': {'labels': dict(LABELS, **{'job-name': job_name})},
            'spec': {'containers': [{'image': 'ghcr.io/mastodon/mastodon:v4.5.4'}]},
            'status': {'phase': 'Failed', 'containerStatuses': [
                {'state': {'terminated': {'exitCode': 1, 'reason': 'Error', 'message': 'PG::UndefinedTable'}}}]}}


class FakeClient(object):
    """Answers GETs from a dict {path: (status, body)} and records every request."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        self.calls.append((method, path, dict(query or {})))
        return self.answers.get(path, (404, {'kind': 'Status', 'reason': 'NotFound'}))


def client_for(deployments, pods, jobs, ca=None):
    answers = {
        '/apis/apps/v1/namespaces/%s/deployments' % NS: (200, {'items': deployments}),
        '/api/v1/namespaces/%s/pods' % NS: (200, {'items': pods}),
        '/apis/batch/v1/namespaces/%s/jobs' % NS: (200, {'items': jobs}),
    }
    if ca is not None:
        answers['/api/v1/namespaces/%s/secrets/mastodon-db-ca' % NS] = (
            200, {'data': {'ca.crt': base64.b64encode(ca).decode()}})
    return FakeClient(answers)


def healthy_client(ca_days=400):
    image, streaming = 'ghcr.io/mastodon/mastodon:v4.5.2', 'ghcr.io/mastodon/mastodon-streaming:v4.5.2'
    return client_for(
        [deployment('sidekiq-default', image), deployment('web', image), deployment('streaming', streaming)],
        [pod('web', image), pod('web', image), pod('streaming', streaming),
         pod('sidekiq-default', image)],
        [job('pre', 'v4.5.1', '2026-11-01T10:00:00Z', 'succeeded'), job('pre', 'v4.5.2', '2026-11-28T10:00:00Z', 'succeeded'),
         job('post', 'v4.5.2', '2026-11-28T10:01:00Z', 'succeeded')],
        ca=ca_pem(ca_days))


def test_healthy_deployment_reads_only_and_lists_everything():
    client = healthy_client()
    status = collect(client, NS, 'mastodon', now=NOW)
    assert all(method == 'GET' for method, _path, _query in client.calls)
    assert len(client.calls) == 5 and client.calls[4][1] == '/api/v1/namespaces/social/configmaps/mastodon-deploy-record'
    assert [q.get('labelSelector') for _m, _p, q in client.calls[:3]] == ['app.kubernetes.io/instance=mastodon'] * 3
    assert status['healthy'] is True
    assert [c['component'] for c in status['components']] == ['web', 'streaming', 'sidekiq-default']
    web = status['components'][0]
    assert (web['version'], web['running_versions'], web['rollout']) == ('v4.5.2', ['v4.5.2'], 'complete')
    # the LAST Job of each phase
    assert [(m['phase'], m['version'], m['outcome'], m['duration_seconds']) for m in status['migrations']] == [
        ('pre', 'v4.5.2', 'succeeded', 9), ('post', 'v4.5.2', 'succeeded', 9)]
    assert status['database_ca']['state'] == 'ok' and status['database_ca']['days_left'] == 400
    table = render_table(status)
    assert table[0] == 'Mastodon mastodon in namespace social: healthy'
    assert table[1].split() == ['COMPONENT', 'VERSION', 'READY', 'UP-TO-DATE', 'ROLLOUT']
    assert table[2].split() == ['web', 'v4.5.2', '2/2', '2', 'complete']
    assert 'mastodon-migrate-pre-v4-5-2' in table[6] and 'succeeded' in table[6]
    assert table[-2].startswith('DATABASE CA  mastodon-db-ca: CN=test Project CA, expires ')
    assert table[-2].endswith('(400 days)')
    assert table[-1] == 'DEPLOY       mastodon-deploy-record: none (no deploy record yet)'


def test_rollout_in_progress_failed_migration_and_expiring_ca_need_attention():
    old, new = 'ghcr.io/mastodon/mastodon:v4.5.2', 'ghcr.io/mastodon/mastodon:v4.5.3'
    failed = job('pre', 'v4.5.4', '2026-11-29T11:00:00Z', 'failed')
    client = client_for(
        [deployment('web', new, ready=1, updated=1, generation=2), deployment('sidekiq-default', new,
                                                                              deadline_exceeded=True)],
        [pod('web', old), pod('web', new), failed_job_pod(failed['metadata']['name'])],
        [job('pre', 'v4.5.3', '2026-11-29T10:00:00Z', 'succeeded'), failed], ca=ca_pem(12))
    status = collect(client, NS, 'mastodon', now=NOW)
    assert status['healthy'] is False
    web, sidekiq = status['components']
    assert web['rollout'] == 'progressing' and web['running_versions'] == ['v4.5.2', 'v4.5.3']
    assert sidekiq['rollout'] == 'failed'
    assert status['migrations'] == [dict(
        phase='pre', job='mastodon-migrate-pre-v4-5-4', version='v4.5.4', outcome='failed',
        created='2026-11-29T11:00:00Z', finished='2026-11-29T11:00:05Z', duration_seconds=5,
        message='BackoffLimitExceeded, exit code 1: PG::UndefinedTable')]
    assert status['database_ca']['state'] == 'expires soon'
    table = '\n'.join(render_table(status))
    assert 'NEEDS ATTENTION' in table
    assert 'v4.5.3 (still running v4.5.2)' in table
    assert 'FAILED (BackoffLimitExceeded, exit code 1: PG::UndefinedTable)' in table
    assert 'failed: rollout failed: ReplicaSet "mastodon-web-2" has timed out progressing.' in table
    assert '(12 days) EXPIRES SOON' in table


def test_expired_ca_is_unhealthy_and_a_missing_ca_is_not():
    status = collect(healthy_client(ca_days=-3), NS, 'mastodon', now=NOW)
    assert status['database_ca']['state'] == 'expired' and status['healthy'] is False
    assert render_table(status)[-2].endswith('EXPIRED')
    image = 'ghcr.io/mastodon/mastodon:v4.5.2'
    status = collect(client_for([deployment('web', image)], [pod('web', image)], []), NS, 'mastodon', now=NOW)
    assert status['database_ca'] == dict(secret='mastodon-db-ca', present=False, state='absent')
    assert status['healthy'] is True
    assert 'no migration Jobs' in render_table(status)


def test_nothing_deployed_is_not_healthy():
    status = collect(client_for([], [], []), NS, 'mastodon', now=NOW)
    assert status['healthy'] is False
    assert render_table(status)[1] == 'no Deployments labelled app.kubernetes.io/instance=mastodon'


def test_an_api_error_is_raised_with_the_path():
    client = FakeClient({'/apis/apps/v1/namespaces/%s/deployments' % NS: (403, {'message': 'forbidden: no list'})})
    with pytest.raises(KubeError, match='deployments: HTTP 403: forbidden: no list'):
        collect(client, NS, 'mastodon', now=NOW)


@pytest.mark.parametrize('image, version', [
    ('ghcr.io/mastodon/mastodon:v4.5.2', 'v4.5.2'),
    ('localhost:5000/mastodon', 'latest'),
    ('ghcr.io/mastodon/mastodon@sha256:0123456789abcdef0123', 'sha256:0123456789ab'),
    ('', ''),
])
def test_image_version(image, version):
    assert image_version(image) == version


RECORD_PATH = '/api/v1/namespaces/%s/configmaps/mastodon-deploy-record' % NS


def record_answer(current, history=()):
    """The deploy record ConfigMap as docs/dev/ARCHITECTURE.md section 2 lays it out (key record.json)."""
    return (200, {'metadata': {'name': 'mastodon-deploy-record'},
                  'data': {'record.json': json.dumps({'current': current, 'history': list(history)})}})


CURRENT = {'version': 'v4.7.6', 'images': {'web': 'ghcr.io/mastodon/mastodon:v4.7.6'}, 'phase': 'rollout',
           'post_migrations': 'held', 'previous_version': 'v4.6.9', 'schema_version': '20260728145403',
           'started_at': '2026-12-05T10:00:00Z', 'updated_at': '2026-12-05T10:20:00Z', 'lines_run': ['4.6', '4.7'],
           'outcome': 'ok'}


@pytest.mark.parametrize('post,pending', [('held', True), ('pending', True), ('done', False)])
def test_deploy_record_post_migrations(post, pending):
    client = healthy_client()
    client.answers[RECORD_PATH] = record_answer(dict(CURRENT, post_migrations=post))
    status = collect(client, NS, 'mastodon', now=NOW)
    record = status['deploy_record']
    assert record['post_migrations_pending'] is pending and record['post_migrations'] == post
    assert (record['version'], record['previous_version'], record['phase'], record['outcome']) == (
        'v4.7.6', 'v4.6.9', 'rollout', 'ok')
    assert status['healthy'] is True  # held on purpose: not a failure
    table = render_table(status)
    assert ('DEPLOY       v4.7.6 (from v4.6.9), phase rollout, outcome ok, post-deployment migrations %s' % post) in table
    pending_lines = [line for line in table if line.startswith('PENDING')]
    if pending:
        assert pending_lines == [
            'PENDING      post-deployment migrations pending (%s): run them with ansible-playbook '
            'fediops.mastodon.deploy -e @<your vars> --tags post-migrations -e migrations_post=run (after a recent '
            'backup: migrations_backup_max_age)' % post]
    else:
        assert pending_lines == []


def test_failed_deploy_is_unhealthy():
    client = healthy_client()
    client.answers[RECORD_PATH] = record_answer(dict(CURRENT, outcome='failed', phase='pre', post_migrations='pending'))
    status = collect(client, NS, 'mastodon', now=NOW)
    assert status['healthy'] is False
    assert 'outcome FAILED' in '\n'.join(render_table(status))


@pytest.mark.parametrize('data', [{}, {'record.json': 'not json'}, {'record.json': '{"history": []}'},
                                  {'record.json': '[1]'}])
def test_unreadable_record_is_shown_not_raised(data):
    client = FakeClient({RECORD_PATH: (200, {'data': data})})
    record = deploy_record_status(client, NS, 'mastodon')
    assert record['state'] == 'invalid' and record['post_migrations_pending'] is False
    assert 'record.json' in record['message']


def test_record_read_forbidden_is_an_error_naming_the_configmap():
    client = FakeClient({RECORD_PATH: (403, {'message': 'configmaps is forbidden'})})
    with pytest.raises(KubeError, match='ConfigMap social/mastodon-deploy-record: HTTP 403'):
        deploy_record_status(client, NS, 'mastodon')


def test_updates_are_asked_for_the_running_version_and_shown():
    calls = []

    def check(url, version, timeout):
        calls.append((url, version, timeout))
        return {'available': [
            {'version': '4.5.4', 'urgent': True, 'type': 'patch', 'release_notes': 'https://example.test/4.5.4'},
            {'version': '4.5.3', 'urgent': False, 'type': 'patch', 'release_notes': None}], 'urgent': True,
            'warning': None}

    status = collect(healthy_client(), NS, 'mastodon', now=NOW, update_check_url='http://127.0.0.1:9/update-check',
                     update_check_timeout=4, check=check)
    assert calls == [('http://127.0.0.1:9/update-check', 'v4.5.2', 4)]
    assert status['updates']['checked'] is True and status['updates']['urgent'] is True
    assert status['healthy'] is True
    assert render_table(status)[-1] == ('UPDATES      URGENT, a security release is newer than v4.5.2: 4.5.4 (urgent), '
                                        '4.5.3; release notes of 4.5.4: https://example.test/4.5.4')


def test_update_check_warning_and_none_newer():
    def check(url, version, timeout):
        return {'available': [], 'urgent': False, 'warning': 'update check http://x/update-check failed: HTTP 500'}

    status = collect(healthy_client(), NS, 'mastodon', now=NOW, update_check_url='http://x/update-check', check=check)
    assert render_table(status)[-1] == 'UPDATES      warning: update check http://x/update-check failed: HTTP 500'

    def nothing(url, version, timeout):
        return {'available': [], 'urgent': False, 'warning': None}

    status = collect(healthy_client(), NS, 'mastodon', now=NOW, update_check_url='http://x/update-check', check=nothing)
    assert render_table(status)[-1] == 'UPDATES      none newer than v4.5.2'


def test_no_update_check_url_asks_nothing():
    def check(url, version, timeout):
        raise AssertionError('no update check expected')

    status = collect(healthy_client(), NS, 'mastodon', now=NOW, update_check_url='', check=check)
    assert status['updates'] == dict(available=[], urgent=False, warning=None, checked=False, running_version='v4.5.2')
    assert not any(line.startswith('UPDATES') for line in render_table(status))


def test_the_version_that_serves_is_the_ready_one():
    """An upgrade to an image that never becomes ready: the Deployment asks for the new tag, the old ready pods
    serve; the table says so."""
    old, new = 'ghcr.io/mastodon/mastodon:v4.6.5', 'ghcr.io/mastodon/mastodon:v4.6.6'
    ready = [{'type': 'Ready', 'status': 'True'}]
    pods = [pod('web', old), pod('web', old), pod('web', new), pod('web', old)]
    for item in pods[:2]:
        item['status']['conditions'] = ready
    pods[3]['status']['conditions'] = ready
    pods[3]['metadata']['deletionTimestamp'] = '2026-11-29T11:00:00Z'
    status = collect(client_for([deployment('web', new, ready=2, updated=1, deadline_exceeded=True)], pods, []),
                     NS, 'mastodon', now=NOW)
    (web,) = status['components']
    assert web['serving_versions'] == ['v4.6.5'] and web['running_versions'] == ['v4.6.5', 'v4.6.6']
    assert web['rollout'] == 'failed'
    assert 'v4.6.6 (serving v4.6.5)' in '\n'.join(render_table(status))


@pytest.mark.parametrize('fields,phase', [({'migrations_running': 'pre', 'phase': 'config', 'outcome': 'running',
                                            'post_migrations': 'pending'}, 'pre'),
                                          ({'migrations_running': 'post', 'post_migrations': 'running',
                                            'outcome': 'running'}, 'post'),
                                          ({'post_migrations': 'running'}, 'post')])
def test_a_migration_left_running_is_shown_with_what_to_do(fields, phase):
    client = healthy_client()
    client.answers[RECORD_PATH] = record_answer(dict(CURRENT, **fields))
    status = collect(client, NS, 'mastodon', now=NOW)
    record = status['deploy_record']
    assert record['migrations_running'] == fields.get('migrations_running')
    # post running is not "to run" (a re-run re-attaches); before the pre Job has finished they are still to run
    assert record['post_migrations_pending'] is (phase == 'pre')
    running = [line for line in render_table(status) if line.startswith('RUNNING')]
    assert running == ['RUNNING      %s-deployment migrations still running (a deploy of v4.7.6 left their Job running '
                       'at migrations_wait_timeout; it is never killed): run the deploy again with the same version '
                       'later, it re-attaches and goes on' % phase]


def test_no_running_line_without_a_migration_left_running():
    client = healthy_client()
    client.answers[RECORD_PATH] = record_answer(dict(CURRENT, migrations_running=None, post_migrations='done'))
    assert [line for line in render_table(collect(client, NS, 'mastodon', now=NOW)) if line.startswith('RUNNING')] == []
