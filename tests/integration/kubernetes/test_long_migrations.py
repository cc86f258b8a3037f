# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A migration that outlives the deploy, against the real API server (tests/cluster).

The pre-deployment migration Job exactly as the deploy renders it (_manifests.build, ApplySet
`<name>-set-migrate-pre`, no activeDeadlineSeconds), its pod made to run 20 minutes by the pod simulator
(annotation sim.fediops.test/delay-seconds through migrations_pod_annotations) and to print Rails' migration
lines over that time (sim.fediops.test/log, served through pods/log by kubesim/logs.go), applied and waited for as
the migrations step does (Applier with detach_running_jobs and describe_job_log=_migrations.describe_progress),
with migrations_wait_timeout 60:

1. the wait ends after about 60 s WITHOUT an error, the Job left running, saying for how long and at which
   migration; progress() showed the migrations as the log named them;
2. a deploy of ANOTHER version meanwhile is refused before it writes anything (its ApplySet would prune the
   running Job: never two migration Jobs of one phase, never a killed migration);
3. a re-run of the same version re-attaches to the running Job (no write to it) and, once the Job ends (the test
   shortens the pod's run), completes; the log gives the schema version for the deploy record.

The API server's audit log (molecule/default/files/audit_writes.py) proves that the Job was created once and
never deleted. The figures are printed.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import sys
import threading
import time
import uuid

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(_ROOT)))
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
sys.path.insert(0, os.path.join(_ROOT, 'molecule', 'default', 'files'))

from audit_writes import writes as audit_writes  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import (  # noqa: E402
    Applier, RunningJobError, job_log)
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient  # noqa: E402
from ansible_collections.fediops.mastodon.plugins.module_utils._manifests import build  # noqa: E402
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.manifests_model import make_model  # noqa: E402

RUN_SECONDS = 1200  # the migration's run: 20 minutes
WAIT_TIMEOUT = 60  # migrations_wait_timeout
# What the migration prints over its run (one line every RUN_SECONDS / len(LOG) seconds): the pre-deployment
# script's schema line, a short migration, then a long one that runs to the end.
LOG = (['fediops: schema_version=20260601000000',
        '== 20260702000000 AddThings: migrating =====================================',
        '== 20260702000000 AddThings: migrated (0.0123s) ============================',
        '== 20260728145403 UpdateAccountSummariesToVersion3: migrating ==============']
       + ['-- refreshing account_summaries'] * 115
       + ['== 20260728145403 UpdateAccountSummariesToVersion3: migrated (1190.0000s) ======'])


def _job(namespace, version):
    model = make_model(namespace, migrations_pod_annotations={
        'sim.fediops.test/delay-seconds': str(RUN_SECONDS), 'sim.fediops.test/log': '\n'.join(LOG)})
    model['version'] = version
    model['image'] = 'ghcr.io/mastodon/mastodon:%s' % version
    [job] = build(model, components=('migrate-pre',))['migrate-pre']
    return job


def _applier(client, namespace, progress=None, wait_timeout=WAIT_TIMEOUT):
    return Applier(client, namespace=namespace, apply_set='masto-set-migrate-pre', wait=True,
                   wait_timeout=wait_timeout, detach_running_jobs=True, progress=progress,
                   describe_job_log=_migrations.describe_progress)


@pytest.fixture
def namespace(kube_cluster):
    name = 'longmig-' + uuid.uuid4().hex[:8]
    kube_cluster.kubectl('create', 'namespace', name)
    # The pods' ServiceAccount (the config component makes it): without it the Job controller cannot create the pod.
    kube_cluster.kubectl('create', 'serviceaccount', '-n', name, 'masto')
    yield name
    kube_cluster.kubectl('delete', 'namespace', name, '--wait=false', check=False)


def _audit(kube_cluster):
    path = os.path.join(str(kube_cluster.state_dir), 'logs', 'audit.log')
    assert os.path.exists(path), 'the local cluster writes an audit log unless FEDIOPS_CLUSTER_AUDIT=0'
    return path


def _job_writes(path, offset, namespace):
    time.sleep(1)  # the audit backend writes in batches
    with open(path, 'rb') as handle:
        handle.seek(offset)
        lines = handle.read().decode('utf-8', 'replace').splitlines()
    return [w for w in audit_writes(lines, namespace) if w['resource'] == 'jobs']


def _pods(kube_cluster, namespace, job_name):
    out = kube_cluster.kubectl('get', 'pods', '-n', namespace, '-l', 'job-name=%s' % job_name, '-o', 'json').stdout
    return json.loads(out)['items']


def test_a_long_migration_outlives_the_deploy_and_a_rerun_reattaches(kube_cluster, namespace):
    client = KubeClient(kubeconfig=kube_cluster.kubeconfig)
    audit = _audit(kube_cluster)
    offset = os.path.getsize(audit)
    job = _job(namespace, 'v4.7.6')
    name = job['metadata']['name']
    assert 'activeDeadlineSeconds' not in job['spec']  # the default: no deadline kill

    # 1. The deploy's wait ends after migrations_wait_timeout, without an error, the Job left running.
    shown = []
    started = time.monotonic()
    result = _applier(client, namespace, lambda text: shown.append((round(time.monotonic() - started), text))).present([job])
    first_wait = time.monotonic() - started
    [running] = result['running_jobs']
    live = json.loads(kube_cluster.kubectl('get', 'job', '-n', namespace, name, '-o', 'json').stdout)
    assert not live['status'].get('succeeded') and not live['status'].get('failed') and live['status'].get('active') == 1
    assert WAIT_TIMEOUT <= first_wait < WAIT_TIMEOUT + 15, first_wait
    # How long the Job has run: since its status.startTime (set by the Job controller, seconds after the Job was
    # created on a loaded machine), not how long the deploy waited.
    started_at = datetime.datetime.strptime(live['status']['startTime'], '%Y-%m-%dT%H:%M:%SZ')
    running_for = time.time() - started_at.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert running['name'] == name and running_for - 6 <= running['elapsed_seconds'] <= running_for + 1, (running, running_for)
    assert 0 < running['elapsed_seconds'] <= first_wait + 1, (running, first_wait)
    assert running['activity'] == 'migration 20260728145403 UpdateAccountSummariesToVersion3', running
    assert re.match(r'Job %s/%s is still running for \d+ s, now at migration 20260728145403 '
                    r'UpdateAccountSummariesToVersion3; it was left running' % (namespace, name), running['msg']), running
    uid = live['metadata']['uid']
    # progress(): once per change of what the log names (read every LOG_POLL seconds), in the order printed.
    texts = [text for dummy, text in shown]
    states = [re.sub(r' \([^()]*\)$', '', text) for text in texts]
    order = ['running', 'running migration 20260702000000 AddThings',
             'running migration 20260702000000 AddThings done, 1 so far',
             'running migration 20260728145403 UpdateAccountSummariesToVersion3']
    # The log is read every LOG_POLL (15) seconds and each of these states lasts 10 s of the pod's log, so a read may
    # fall on either side of one of them; when the pod started late (a loaded machine), the last read before the
    # deadline may not have reached the last migration yet; the result's activity above is read at the deadline.
    assert states[0] == 'running' and states[-1] in order[-2:], shown
    assert [state for state in order if state in states] == states, shown  # each once, in order

    # 2. Another version while it runs: refused before any write (the prune would kill the running Job).
    other = _job(namespace, 'v4.7.7')
    assert other['metadata']['name'] != name
    refused_at = os.path.getsize(audit)
    with pytest.raises(RunningJobError) as refused:
        _applier(client, namespace).present([other])
    assert re.search(r'not pruning Job %s/%s: running for \d+ s, now at migration 20260728145403 '
                     r'UpdateAccountSummariesToVersion3: still running' % (namespace, name), refused.value.msg), \
        refused.value.msg
    assert _job_writes(audit, refused_at, namespace) == []
    with pytest.raises(RunningJobError):  # the plan's server-side dry-run refuses it the same way
        Applier(client, namespace=namespace, apply_set='masto-set-migrate-pre', check_mode=True).present([other])

    # 3. The re-run re-attaches: no write to the Job; it completes once the migration ends.
    [pod] = _pods(kube_cluster, namespace, name)
    shown_again = []

    def finish_the_migration():
        time.sleep(10)
        kube_cluster.kubectl('annotate', 'pod', '-n', namespace, pod['metadata']['name'], '--overwrite',
                             'sim.fediops.test/delay-seconds=0')

    finisher = threading.Thread(target=finish_the_migration)
    started = time.monotonic()
    finisher.start()
    result = _applier(client, namespace, shown_again.append).present([job])
    second_wait = time.monotonic() - started
    finisher.join()
    assert 'running_jobs' not in result
    assert [(o['name'], o['action']) for o in result['objects']] == [(name, 'unchanged')]
    assert second_wait < 40, second_wait
    assert shown_again[0].startswith('running migration 20260728145403'), shown_again
    assert shown_again[-1].startswith('complete after '), shown_again
    live = json.loads(kube_cluster.kubectl('get', 'job', '-n', namespace, name, '-o', 'json').stdout)
    assert live['status'].get('succeeded') == 1
    assert live['metadata']['uid'] == uid  # the same Job: re-attached, not replaced
    assert _migrations.schema_version_from_log(job_log(client, live)) == '20260728145403'

    # Never two Jobs of the phase: one create, no delete, by anyone but the cluster's controllers.
    writes = _job_writes(audit, offset, namespace)
    creates = [w for w in writes if w['verb'] in ('create', 'patch') and w['code'] == 201]
    deletes = [w for w in writes if w['verb'] in ('delete', 'deletecollection')]
    assert [(w['name'], w['code']) for w in creates] == [(name, 201)], writes
    assert deletes == [], writes
    print('\nlong migration: first wait %.1f s (timeout %d s), left running at %s s of its %d s; the other '
          'version refused before any write; the re-run re-attached and completed after %.1f s; Job writes '
          'in the audit log: %s; progress: %s then %s'
          % (first_wait, WAIT_TIMEOUT, running['elapsed_seconds'], RUN_SECONDS, second_wait,
             [(w['verb'], w['name'], w['code']) for w in writes], texts, shown_again))


def test_pods_log_through_the_simulated_kubelet(kube_cluster, namespace):
    """kubesim/logs.go: `kubectl logs` of a simulated pod shows its sim.fediops.test/log lines as its run
    proceeds (the API server proxies pods/log to the node's kubelet endpoint)."""
    pod = {'apiVersion': 'v1', 'kind': 'Pod',
           'metadata': {'name': 'printer', 'namespace': namespace,
                        'annotations': {'sim.fediops.test/delay-seconds': '6', 'sim.fediops.test/log': 'one\ntwo\nthree'}},
           'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'c', 'image': 'example.test/printer:1'}]}}
    kube_cluster.kubectl('apply', '-f', '-', input=json.dumps(pod))
    for dummy in range(50):
        status = json.loads(kube_cluster.kubectl('get', 'pod', '-n', namespace, 'printer', '-o', 'json').stdout)['status']
        if status.get('startTime'):
            break
        time.sleep(0.1)
    early = kube_cluster.kubectl('logs', '-n', namespace, 'printer').stdout
    assert early.splitlines()[:1] == ['one'] and len(early.splitlines()) < 3, early
    for dummy in range(100):
        if json.loads(kube_cluster.kubectl('get', 'pod', '-n', namespace, 'printer', '-o', 'json').stdout)['status'].get('phase') == 'Succeeded':
            break
        time.sleep(0.1)
    assert kube_cluster.kubectl('logs', '-n', namespace, 'printer').stdout == 'one\ntwo\nthree\n'
    assert kube_cluster.kubectl('logs', '-n', namespace, 'printer', '--tail=1').stdout == 'three\n'
