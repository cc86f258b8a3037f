# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/status.yml (fediops.mastodon.mastodon_status) against the real local cluster.

The objects are what a deploy in the middle of a failed upgrade leaves: web and streaming rolled out to v4.5.3,
a sidekiq group whose pods never become Ready (kubesim's sim.fediops.test/never-ready annotation), the v4.5.3
migration Jobs complete and a later v4.5.4 pre-deployment Job failed (kubesim fails pods annotated
sim.fediops.test/fail with exit code 1 and the given message; the Job controller then sets Failed /
BackoffLimitExceeded, backoffLimit 0), a database CA Secret whose certificate expires in 20 days, and the deploy
record (ConfigMap mastodon-deploy-record, key record.json, docs/dev/ARCHITECTURE.md section 2) of that failed
deploy. The cluster's own controllers write every status the module reads. Newer releases come from the local
update-check stand-in (tests/support/update_check_standin.py), never from api.joinmastodon.org.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import sys
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PLAY = '''\
- name: status
  ansible.builtin.import_playbook: fediops.mastodon.status
'''
LABELS = {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/instance': 'mastodon'}
SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

from update_check_standin import UpdateCheckStandin  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def update_check():
    standin = UpdateCheckStandin().start()
    yield standin
    standin.stop()


def _record(current, history=()):
    """The deploy record ConfigMap as the deploy writes it (outside every ApplySet, no instance label needed)."""
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'mastodon-deploy-record'},
            'data': {'record.json': json.dumps({'current': current, 'history': list(history)})}}


def _entry(version, previous, phase, post, outcome):
    return {'version': version, 'images': {'web': 'ghcr.io/mastodon/mastodon:' + version}, 'phase': phase,
            'post_migrations': post, 'previous_version': previous, 'schema_version': '20250101000000',
            'started_at': '2026-12-05T10:00:00Z', 'updated_at': '2026-12-05T10:05:00Z', 'lines_run': ['4.5'],
            'outcome': outcome}


def _ca_pem(days):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'status test Project CA')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days, hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _deployment(component, image, replicas, annotations=None):
    labels = dict(LABELS, **{'app.kubernetes.io/component': component})
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': 'mastodon-' + component, 'labels': labels},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels, 'annotations': annotations or {}},
                                  'spec': {'containers': [{'name': component, 'image': image}]}}}}


def _job(phase, version, fail=False):
    labels = dict(LABELS, **{'app.kubernetes.io/component': 'migrations-' + phase,
                             'app.kubernetes.io/version': version})
    annotations = {'sim.fediops.test/fail': 'true',
                   'sim.fediops.test/fail-message': 'PG::UndefinedTable'} if fail else {}
    return {'apiVersion': 'batch/v1', 'kind': 'Job',
            'metadata': {'name': 'mastodon-migrate-%s-%s' % (phase, version.replace('.', '-')), 'labels': labels},
            'spec': {'backoffLimit': 0, 'template': {
                'metadata': {'labels': labels, 'annotations': annotations},
                'spec': {'restartPolicy': 'Never', 'containers': [
                    {'name': 'migrate', 'image': 'ghcr.io/mastodon/mastodon:' + version}]}}}}


def _apply(kube_cluster, namespace, objects):
    kube_cluster.kubectl('apply', '-n', namespace, '-f', '-',
                         input=json.dumps({'apiVersion': 'v1', 'kind': 'List', 'items': objects}))


def _wait_job(kube_cluster, namespace, name, condition):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = kube_cluster.kubectl('get', 'job', name, '-n', namespace, '-o', 'json').stdout
        conds = json.loads(out).get('status', {}).get('conditions') or []
        if any(c['type'] == condition and c['status'] == 'True' for c in conds):
            return
        time.sleep(0.5)
    raise AssertionError('Job %s never reached %s' % (name, condition))


def test_status_of_a_failed_upgrade(kube_cluster, namespace, run_playbook, audit_log, update_check):
    image = 'ghcr.io/mastodon/mastodon:v4.5.3'
    ca = _ca_pem(20)
    _apply(kube_cluster, namespace, [
        _record(_entry('v4.5.4', 'v4.5.3', 'pre', 'pending', 'failed'),
                [_entry('v4.5.3', 'v4.5.2', 'post', 'done', 'ok')]),
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'mastodon-db-ca', 'labels': LABELS},
         'data': {'ca.crt': base64.b64encode(ca).decode()}},
        _deployment('web', image, 2), _deployment('streaming', 'ghcr.io/mastodon/mastodon-streaming:v4.5.3', 1),
        _deployment('sidekiq-default', image, 1, {'sim.fediops.test/never-ready': 'true'}),
        _job('pre', 'v4.5.3'), _job('post', 'v4.5.3')])
    _wait_job(kube_cluster, namespace, 'mastodon-migrate-pre-v4-5-3', 'Complete')
    _wait_job(kube_cluster, namespace, 'mastodon-migrate-post-v4-5-3', 'Complete')
    _apply(kube_cluster, namespace, [_job('pre', 'v4.5.4', fail=True)])
    _wait_job(kube_cluster, namespace, 'mastodon-migrate-pre-v4-5-4', 'Failed')
    kube_cluster.kubectl('rollout', 'status', '-n', namespace, 'deployment/mastodon-web', '--timeout=60s')
    kube_cluster.kubectl('rollout', 'status', '-n', namespace, 'deployment/mastodon-streaming', '--timeout=60s')

    since = audit_log.mark()
    extra = {'config_namespace': namespace, 'config_name': 'mastodon', 'config_update_check_url': update_check.url}
    env = {'K8S_AUTH_KUBECONFIG': kube_cluster.kubeconfig}
    res = run_playbook(PLAY, extra_vars=extra, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    status = res.result('Read the deployment\'s state')
    table = res.result('Show it')['msg']
    print('\n'.join(table))

    assert status['changed'] is False and status['healthy'] is False
    assert table[0] == 'Mastodon mastodon in namespace %s: NEEDS ATTENTION' % namespace
    rows = {line.split()[0]: line for line in table[1:]}
    assert rows['COMPONENT'].split() == ['COMPONENT', 'VERSION', 'READY', 'UP-TO-DATE', 'ROLLOUT']
    assert rows['web'].split() == ['web', 'v4.5.3', '2/2', '2', 'complete']
    assert rows['streaming'].split() == ['streaming', 'v4.5.3', '1/1', '1', 'complete']
    assert rows['sidekiq-default'].split()[:4] == ['sidekiq-default', 'v4.5.3', '0/1', '1']
    assert 'progressing:' in rows['sidekiq-default']
    # the LAST pre-deployment Job is the failed v4.5.4 one, with the pod's exit code and message
    assert rows['pre'].split()[:3] == ['pre', 'mastodon-migrate-pre-v4-5-4', 'v4.5.4']
    assert 'FAILED (BackoffLimitExceeded, exit code 1: PG::UndefinedTable)' in rows['pre']
    assert rows['post'].split()[:4] == ['post', 'mastodon-migrate-post-v4-5-3', 'v4.5.3', 'succeeded']
    assert rows['DATABASE'].startswith('DATABASE CA  mastodon-db-ca: CN=status test Project CA, expires ')
    assert rows['DATABASE'].endswith('(20 days) EXPIRES SOON')
    assert status['database_ca']['days_left'] == 20
    # the deploy record: the failed v4.5.4 deploy, its post-deployment migrations still to run
    assert rows['DEPLOY'] == ('DEPLOY       v4.5.4 (from v4.5.3), phase pre, outcome FAILED, '
                              'post-deployment migrations pending')
    assert rows['PENDING'].startswith('PENDING      post-deployment migrations pending (pending): run them with '
                                      'ansible-playbook fediops.mastodon.deploy')
    assert status['deploy_record']['post_migrations_pending'] is True
    # the update check, asked as Mastodon asks it, for the version web runs
    assert update_check.requests[0] == {'path': '/update-check', 'query': {'version': '4.5.3'}, 'accept': 'application/json'}
    assert rows['UPDATES'].startswith('UPDATES      URGENT, a security release is newer than v4.5.3: 4.7.6 (urgent), '
                                      '4.7.5, 4.7.0, 4.6.9 (urgent), 4.5.4; release notes of 4.7.6: ')
    assert status['updates']['urgent'] is True and status['updates']['warning'] is None

    # read-only: only GETs reached the API server, in check mode the same answer
    events = audit_log.events(since)
    assert events and {e['verb'] for e in events} <= {'get', 'list'}, {e['verb'] for e in events}
    checked = run_playbook(PLAY, extra_vars=extra, env=env, check=True)
    assert checked.result('Show it')['msg'][1:] == table[1:]

    # status_fail_unhealthy turns the table into a failure; an empty config_update_check_url asks nothing
    asked = len(update_check.requests)
    failed = run_playbook(PLAY, extra_vars=dict(extra, status_fail_unhealthy=True, config_update_check_url=''), env=env)
    assert failed.returncode != 0
    assert 'FAILED (BackoffLimitExceeded' in failed.result('Fail when a rollout or a migration failed')['msg']
    assert len(update_check.requests) == asked
    assert failed.result('Read the deployment\'s state')['updates']['checked'] is False


def test_status_of_held_post_migrations_and_a_broken_update_check(kube_cluster, namespace, run_playbook, update_check):
    """A deploy that stopped at the point of no return (migrations_post: hold): healthy, with its post-deployment
    migrations reported pending (held) and how to run them; an update check answering 500 is a warning only."""
    image = 'ghcr.io/mastodon/mastodon:v4.7.6'
    _apply(kube_cluster, namespace, [_deployment('web', image, 1),
                                     _record(_entry('v4.7.6', 'v4.6.9', 'rollout', 'held', 'ok'))])
    kube_cluster.kubectl('rollout', 'status', '-n', namespace, 'deployment/mastodon-web', '--timeout=60s')
    update_check.mode, update_check.status = 'status', 500
    extra = {'config_namespace': namespace, 'config_name': 'mastodon', 'config_update_check_url': update_check.url}
    res = run_playbook(PLAY, extra_vars=dict(extra, status_fail_unhealthy=True),
                       env={'K8S_AUTH_KUBECONFIG': kube_cluster.kubeconfig})
    assert res.returncode == 0, res.stdout + res.stderr
    status = res.result('Read the deployment\'s state')
    table = res.result('Show it')['msg']
    print('\n'.join(table))
    assert status['healthy'] is True and status['deploy_record']['post_migrations'] == 'held'
    assert ('DEPLOY       v4.7.6 (from v4.6.9), phase rollout, outcome ok, post-deployment migrations held') in table
    assert any(line.startswith('PENDING      post-deployment migrations pending (held): run them with ansible-playbook '
                               'fediops.mastodon.deploy -e @<your vars> --tags post-migrations -e migrations_post=run')
               for line in table), table
    assert table[-1] == 'UPDATES      warning: update check %s failed: HTTP 500' % update_check.url
    assert update_check.requests[0]['query'] == {'version': '4.7.6'}
