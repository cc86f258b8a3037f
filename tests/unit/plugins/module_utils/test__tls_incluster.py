# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the in-cluster TLS check: the Job manifest, the parser of its result, the failure message, and
run_job's create -> wait -> read -> delete sequence against a fake API client."""
from __future__ import annotations

import json

import pytest
import trustme

from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeError
from ansible_collections.fediops.mastodon.plugins.module_utils._tls_incluster import (
    NODE_SCRIPT, RESULT_KEY, InClusterError, container_endpoints, job_failure_message, job_manifest, node_result_kind,
    parse_job_output, run_job)

DB_CA = trustme.CA().cert_pem.bytes().decode('ascii')
REDIS_CA = trustme.CA().cert_pem.bytes().decode('ascii')
PG = 'db-postgresql-fra1-1-do-user-1-0.b.db.ondigitalocean.com'
KV = 'db-valkey-fra1-1-do-user-1-0.b.db.ondigitalocean.com'


def endpoints(redis_ca=None):
    return [dict(name='database', host=PG, port=25060, protocol='postgres', trust='ca', ca_pem=DB_CA),
            dict(name='pool', host=PG, port=25061, protocol='postgres', trust='ca', ca_pem=DB_CA),
            dict(name='redis', host=KV, port=25061, protocol='redis', trust='ca' if redis_ca else 'system',
                 ca_pem=redis_ca)]


def test_container_endpoints_mount_the_database_ca():
    items = container_endpoints(endpoints(REDIS_CA), ca_secret='m-db-ca', ca_mount_dir='/etc/mastodon/db-ca/')
    assert [i.get('ca_file') for i in items] == ['/etc/mastodon/db-ca/ca.crt'] * 2 + [None]
    assert 'ca_pem' not in items[0] and items[2]['ca_pem'] == REDIS_CA  # the operator's Redis CA goes inline
    inline = container_endpoints(endpoints())
    assert inline[0]['ca_pem'] == DB_CA and 'ca_file' not in inline[0] and 'ca_pem' not in inline[2]


def test_container_endpoints_reject_bad_input():
    bad = endpoints()
    bad[2]['trust'] = 'public'
    with pytest.raises(ValueError) as info:
        container_endpoints(bad)
    assert 'endpoints[2] (redis): trust must be one of ca, system' in str(info.value)


def test_job_manifest():
    job = job_manifest('m', 'mastodon', 'ghcr.io/mastodon/mastodon-streaming:v4.6.5', endpoints(), ca_secret='m-db-ca',
                       labels={'app.kubernetes.io/name': 'mastodon'}, service_account='m', timeout=5,
                       pod_annotations={'a': 'b'}, image_pull_secrets=['regcred'], suffix='abc123')
    assert job['apiVersion'] == 'batch/v1' and job['kind'] == 'Job'
    assert job['metadata'] == {'name': 'm-tls-check-abc123', 'namespace': 'mastodon',
                               'labels': {'app.kubernetes.io/name': 'mastodon', 'app.kubernetes.io/component': 'tls-check'}}
    spec = job['spec']
    assert spec['backoffLimit'] == 0 and spec['ttlSecondsAfterFinished'] > 0 and spec['activeDeadlineSeconds'] == 105
    pod = spec['template']['spec']
    assert pod['restartPolicy'] == 'Never' and pod['automountServiceAccountToken'] is False
    assert pod['securityContext']['runAsUser'] == 991 and pod['serviceAccountName'] == 'm'
    assert pod['imagePullSecrets'] == [{'name': 'regcred'}]
    assert pod['volumes'] == [{'name': 'db-ca', 'secret': {'secretName': 'm-db-ca', 'defaultMode': 0o444}}]
    container = pod['containers'][0]
    assert container['image'] == 'ghcr.io/mastodon/mastodon-streaming:v4.6.5'
    assert container['command'] == ['node', '-e', NODE_SCRIPT]
    assert container['volumeMounts'] == [{'name': 'db-ca', 'mountPath': '/etc/mastodon/db-ca', 'readOnly': True}]
    env = dict((e['name'], e['value']) for e in container['env'])
    items = json.loads(env['FEDIOPS_TLS_ENDPOINTS'])
    assert [(i['name'], i['trust'], i.get('ca_file')) for i in items] == [
        ('database', 'ca', '/etc/mastodon/db-ca/ca.crt'), ('pool', 'ca', '/etc/mastodon/db-ca/ca.crt'),
        ('redis', 'system', None)]
    assert env['FEDIOPS_TLS_TIMEOUT'] == '5'
    assert spec['template']['metadata'] == {'labels': job['metadata']['labels'], 'annotations': {'a': 'b'}}
    # No credential in the Job: only names, ports and CA certificates.
    assert 'password' not in json.dumps(job).lower()


def test_job_manifest_without_secret_passes_the_ca_inline():
    job = job_manifest('m', 'ns', 'img', endpoints())
    pod = job['spec']['template']['spec']
    assert 'volumes' not in pod and 'volumeMounts' not in pod['containers'][0]
    assert job['metadata']['name'].startswith('m-tls-check-') and job['metadata']['name'] != job_manifest(
        'm', 'ns', 'img', endpoints())['metadata']['name']


def _line(results):
    return json.dumps({RESULT_KEY: {'node': 'v24.0.0', 'results': results}})


def test_parse_job_output_ok():
    text = 'some log\n' + _line([dict(name='database', host=PG, port=25060, protocol='postgres', trust='ca', ok=True,
                                      days_left=80)])
    result = parse_job_output(text)
    assert result['failed'] is False and result['msg'] is None and result['where'] == 'cluster'
    assert result['results'][0]['verified'] is True and result['node'] == 'v24.0.0'


def test_parse_job_output_failures():
    text = _line([
        dict(name='database', host=PG, port=25060, protocol='postgres', trust='ca', ok=True),
        dict(name='redis', host=KV, port=25061, protocol='redis', trust='ca', ok=False,
             code='UNABLE_TO_VERIFY_LEAF_SIGNATURE', message='unable to verify the first certificate', issuer='O=Public'),
        dict(name='pool', host=PG, port=25061, protocol='postgres', trust='ca', ok=False, code='ETIMEDOUT',
             message='timeout: no connection'),
    ])
    result = parse_job_output(text)
    assert result['failed'] and result['unreachable'] == ['pool']
    redis = result['results'][1]
    assert redis['error_kind'] == 'unknown_ca'
    assert ('redis: %s:25061 (redis, trust CA, from the cluster): unknown CA: the server certificate (issuer O=Public) '
            'does not chain to the given CA' % KV) in result['msg']
    assert 'publicly trusted' in result['msg']
    assert 'the Kubernetes cluster cannot reach pool either' in result['msg']
    assert "trusted sources (rule type k8s" in result['msg']


@pytest.mark.parametrize('code, kind', [
    ('ERR_TLS_CERT_ALTNAME_INVALID', 'hostname_mismatch'), ('CERT_HAS_EXPIRED', 'expired'),
    ('ECONNREFUSED', 'connection_refused'), ('ENOTFOUND', 'dns'), ('EHOSTUNREACH', 'no_route'),
    ('NO_TLS', 'no_tls'), ('CA_INVALID', 'ca_invalid'), ('ERR_SSL_WRONG_VERSION_NUMBER', 'handshake'), (None, 'verify'),
])
def test_node_result_kind(code, kind):
    assert node_result_kind(code) == kind


def test_parse_job_output_without_result():
    with pytest.raises(InClusterError) as info:
        parse_job_output('node: not found\n', job='the Job ns/x')
    assert str(info.value) == 'the Job ns/x printed no result: node: not found'
    with pytest.raises(InClusterError) as info:
        parse_job_output('')
    assert 'printed no result' in str(info.value)


def test_job_failure_message():
    job = {'metadata': {'name': 'm-tls-check-1', 'namespace': 'ns'},
           'status': {'conditions': [{'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                                      'message': 'Job has reached the specified backoff limit'}]}}
    terminated = {'reason': 'Error', 'exitCode': 1, 'message': 'simulated failure'}
    pod = {'status': {'containerStatuses': [{'state': {'terminated': terminated}}]}}
    assert job_failure_message(job, [pod]) == ('the in-cluster TLS check Job ns/m-tls-check-1 ended without a result: '
                                               'Error (exit code 1): simulated failure')
    waiting = {'status': {'containerStatuses': [{'state': {'waiting': {'reason': 'ImagePullBackOff', 'message': 'no'}}}]}}
    assert job_failure_message(job, [waiting]).endswith('ImagePullBackOff: no')
    assert job_failure_message(job, []).endswith('BackoffLimitExceeded: Job has reached the specified backoff limit')


class FakeClient(object):
    """Answers as the API server would for one Job: created, then Complete or Failed after `polls` GETs."""

    def __init__(self, outcome='Complete', message=None, polls=2, create_status=201, log=None):
        self.outcome, self.message, self.polls, self.create_status, self.log = outcome, message, polls, create_status, log
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        parts = ['/apis/batch/v1' if kind == 'Job' else '/api/v1', 'namespaces', namespace,
                 'jobs' if kind == 'Job' else 'pods']
        return '/'.join(parts + [p for p in (name, subresource) if p])

    def request(self, method, path, query=None, body=None, **_kwargs):
        self.calls.append((method, path, query))
        if method == 'POST':
            return self.create_status, {'message': 'forbidden'} if self.create_status != 201 else body
        if method == 'DELETE':
            return 200, {}
        if path.endswith('/log'):
            if self.log is None:
                raise KubeError('no kubelet')
            return 200, self.log
        if path.endswith('/pods'):
            terminated = {'reason': 'Completed' if self.outcome == 'Complete' else 'Error',
                          'exitCode': 0 if self.outcome == 'Complete' else 1}
            if self.message is not None:
                terminated['message'] = self.message
            return 200, {'items': [{'metadata': {'name': 'pod-1'},
                                    'status': {'containerStatuses': [{'state': {'terminated': terminated}}]}}]}
        self.polls -= 1
        conditions = [{'type': self.outcome, 'status': 'True'}] if self.polls <= 0 else []
        return 200, {'metadata': {'name': path.rsplit('/', 1)[1], 'namespace': 'ns'}, 'status': {'conditions': conditions}}


def _job():
    return job_manifest('m', 'ns', 'img', endpoints(), suffix='x')


def test_run_job_reads_the_termination_message_and_deletes_the_job():
    client = FakeClient(message=_line([dict(name='database', host=PG, port=25060, protocol='postgres', trust='ca',
                                            ok=True)]))
    result = run_job(client, _job(), sleep=lambda _s: None)
    assert result['failed'] is False
    methods = [c[0] for c in client.calls]
    assert methods[0] == 'POST' and methods[-1] == 'DELETE' and methods.count('GET') == 3
    assert client.calls[-1] == ('DELETE', '/apis/batch/v1/namespaces/ns/jobs/m-tls-check-x',
                                {'propagationPolicy': 'Background'})
    assert client.calls[3][2] == {'labelSelector': 'job-name=m-tls-check-x'}


def test_run_job_falls_back_to_the_log():
    line = json.loads(_line([dict(name='redis', host=KV, port=1, protocol='redis', trust='system', ok=True)]))
    client = FakeClient(message='', log=line)  # the API client decodes a JSON log line
    assert run_job(client, _job(), sleep=lambda _s: None)['results'][0]['name'] == 'redis'


def test_run_job_surfaces_the_failure_and_still_deletes():
    client = FakeClient(outcome='Failed', message='simulated failure')
    with pytest.raises(InClusterError) as info:
        run_job(client, _job(), sleep=lambda _s: None)
    assert str(info.value) == ('the in-cluster TLS check Job ns/m-tls-check-x ended without a result: '
                               'Error (exit code 1): simulated failure')
    assert client.calls[-1][0] == 'DELETE'


def test_run_job_times_out_and_deletes():
    client = FakeClient(polls=10 ** 6)
    ticks = iter(range(1000))
    with pytest.raises(InClusterError) as info:
        run_job(client, _job(), wait_timeout=5, sleep=lambda _s: None, clock=lambda: next(ticks))
    assert 'did not finish within 5s' in str(info.value) and client.calls[-1][0] == 'DELETE'


def test_run_job_create_refused():
    client = FakeClient(create_status=403)
    with pytest.raises(InClusterError) as info:
        run_job(client, _job())
    assert 'cannot create the in-cluster TLS check Job ns/m-tls-check-x: HTTP 403 forbidden' in str(info.value)
    assert [c[0] for c in client.calls] == ['POST']
