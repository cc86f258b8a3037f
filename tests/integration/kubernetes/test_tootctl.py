# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/tootctl.yml against the real local cluster: a one-off tootctl Job and the weekly media-remove CronJob.

The config role runs first inside the playbook (database source `explicit`, so no DigitalOcean stand-in is needed) and
creates the env ConfigMap/Secret and the CA Secret the tootctl pods use. kubesim completes Job pods after ~1 s and
fails every pod whose image contains `:fail`; the tootctl template takes no pod annotations, so the failing variant
carries the pod annotation the simulated cluster fails (sim.fediops.test/fail).
"""
from __future__ import annotations

import datetime
import json
import time
import uuid

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PLAY = '''\
- name: tootctl
  ansible.builtin.import_playbook: fediops.mastodon.tootctl
'''
ARGS = ['accounts', 'modify', 'alice', '--role', 'Owner']
JOB_TASK = 'Run the tootctl Job and wait for it'
CRON_TASK = 'Install the weekly media cleanup CronJob'
REMOVE_TASK = 'Remove the weekly media cleanup CronJob'


def _ca_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'tootctl test CA')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode('ascii')


def _vars(namespace, ca_pem, **extra):
    out = {
        'config_namespace': namespace,
        'config_local_domain': 'tootctl.example.social',
        'config_database_source': 'explicit',
        'config_db_host': 'db.tootctl.invalid',
        'config_db_password': 'tootctl-db-password-1234',
        'config_redis_url': 'rediss://default:tootctl-redis-pw@redis.tootctl.invalid:25061',
        'config_db_ca_pem': ca_pem,
        'config_tls_preflight': False,
        'config_media_ephemeral': True,
    }
    out.update(extra)
    return out


class Env(object):
    """One namespace and the tootctl.yml runs made in it."""

    def __init__(self, kube_cluster, run, ca_pem):
        self.kube = kube_cluster
        self.run_playbook = run
        self.ca_pem = ca_pem
        self.namespace = 'tootctl-' + uuid.uuid4().hex[:8]

    def run(self, **extra):
        start = time.monotonic()
        res = self.run_playbook(PLAY, extra_vars=_vars(self.namespace, self.ca_pem, **extra),
                                env={'K8S_AUTH_KUBECONFIG': self.kube.kubeconfig})
        res.elapsed = time.monotonic() - start
        assert res.data is not None, res.stdout[-4000:] + res.stderr[-4000:]
        return res

    def get(self, *what):
        done = self.kube.kubectl('-n', self.namespace, 'get', *what, '-o', 'json', check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def items(self, kind):
        return self.get(kind)['items']


def _stats(res):
    return res.stats.get('localhost', {})


def _brief(res):
    return json.dumps([(name, {k: r.get(k) for k in ('changed', 'failed', 'skipped', 'msg') if k in r})
                       for name, r in res.task_results()], indent=1)[-6000:]


@pytest.fixture(scope='module')
def ca_pem():
    return _ca_pem()


@pytest.fixture(scope='module')
def installed(kube_cluster, run_playbook_module, ca_pem):
    """One run: the one-off Job and the CronJob (days 14); then the same run again; namespace removed at the end."""
    env = Env(kube_cluster, run_playbook_module, ca_pem)
    first = env.run(tootctl_args=ARGS, tootctl_media_cronjob=True, tootctl_media_days=14)
    second = env.run(tootctl_args=ARGS, tootctl_media_cronjob=True, tootctl_media_days=14) if first.returncode == 0 else None
    yield env, first, second
    kube_cluster.kubectl('delete', 'namespace', env.namespace, '--ignore-not-found', '--wait=false', check=False)


def test_job_reports_success_when_complete(installed):
    env, first, _second = installed
    assert first.returncode == 0, _brief(first)
    res = first.result(JOB_TASK)
    assert res.get('changed') is True and not res.get('failed'), _brief(first)
    jobs = env.items('jobs')
    assert len(jobs) == 1, [j['metadata']['name'] for j in jobs]
    # wait: true: when the playbook returns, the Job has completed (kubesim takes ~1 s)
    conditions = {c['type']: c['status'] for c in jobs[0]['status'].get('conditions', [])}
    assert conditions.get('Complete') == 'True', jobs[0]['status']
    assert jobs[0]['status'].get('succeeded') == 1, jobs[0]['status']


def test_job_spec(installed):
    env, first, _second = installed
    assert first.returncode == 0, _brief(first)
    job = env.items('jobs')[0]
    assert job['metadata']['name'].startswith('mastodon-tootctl-')
    assert job['spec']['backoffLimit'] == 0
    pod = job['spec']['template']['spec']
    assert pod['restartPolicy'] == 'Never'
    (container,) = pod['containers']
    assert container['command'] == ['bin/tootctl'] + ARGS, container
    assert not container.get('args'), container
    assert container['image'] == 'ghcr.io/mastodon/mastodon:v4.7.6'  # the default version
    assert {'name': 'RAILS_ENV', 'value': 'production'} in container['env']
    # environment from the config role's ConfigMap and Secret, which exist and hold the settings
    assert container['envFrom'] == [{'configMapRef': {'name': 'mastodon-env'}}, {'secretRef': {'name': 'mastodon-env'}}]
    config_map = env.get('configmap', 'mastodon-env')
    assert config_map['data']['LOCAL_DOMAIN'] == 'tootctl.example.social'
    assert config_map['data']['PGSSLROOTCERT'] == '/etc/mastodon/db-ca/ca.crt'
    secret = env.get('secret', 'mastodon-env')
    assert 'DB_PASS' in secret['data'] and 'SECRET_KEY_BASE' in secret['data'], sorted(secret['data'])
    # the database CA, mounted where PGSSLROOTCERT points
    # (web's writable scratch volumes come along: the root filesystem is read-only)
    assert {'name': 'db-ca', 'secret': {'secretName': 'mastodon-db-ca', 'defaultMode': 292}} in pod['volumes']
    assert {'name': 'db-ca', 'mountPath': '/etc/mastodon/db-ca', 'readOnly': True} in container['volumeMounts']
    ca_secret = env.get('secret', 'mastodon-db-ca')
    assert 'ca.crt' in ca_secret['data']
    assert pod['securityContext']['runAsNonRoot'] is True


def test_cronjob_installed(installed):
    env, first, _second = installed
    assert first.returncode == 0, _brief(first)
    assert first.result(CRON_TASK).get('changed') is True, _brief(first)
    (cron,) = env.items('cronjobs')
    assert cron['metadata']['name'] == 'mastodon-media-remove'
    fields = cron['spec']['schedule'].split()
    assert len(fields) == 5 and fields[2:4] == ['*', '*'] and fields[4] not in ('*', '*/1'), cron['spec']['schedule']
    assert cron['spec']['schedule'] == '17 4 * * 0'
    assert cron['spec']['concurrencyPolicy'] == 'Forbid'
    pod = cron['spec']['jobTemplate']['spec']['template']['spec']
    (container,) = pod['containers']
    assert container['command'] == ['bin/tootctl', 'media', 'remove', '--days', '14'], container
    assert container['image'] == 'ghcr.io/mastodon/mastodon:v4.7.6'  # the default version
    assert container['envFrom'][1] == {'secretRef': {'name': 'mastodon-env'}}
    assert '/etc/mastodon/db-ca' in [m['mountPath'] for m in container['volumeMounts']], container


def test_second_run_changes_nothing(installed):
    env, first, second = installed
    assert first.returncode == 0 and second is not None, _brief(first)
    assert second.returncode == 0, _brief(second)
    assert _stats(second).get('changed') == 0, _brief(second)
    assert len(env.items('jobs')) == 1 and len(env.items('cronjobs')) == 1


def test_disabled_cronjob_is_removed(installed):
    env, first, _second = installed
    assert first.returncode == 0, _brief(first)
    removed = env.run(tootctl_media_cronjob=False)
    assert removed.returncode == 0, _brief(removed)
    assert removed.result(REMOVE_TASK).get('changed') is True, _brief(removed)
    assert env.items('cronjobs') == []
    assert env.get('secret', 'mastodon-set-cron') is None, 'the ApplySet parent Secret of the CronJob was left behind'
    # the one-off Job and the configuration are not touched
    assert len(env.items('jobs')) == 1 and env.get('secret', 'mastodon-env') is not None
    again = env.run(tootctl_media_cronjob=False)
    assert again.returncode == 0, _brief(again)
    assert _stats(again).get('changed') == 0, _brief(again)


def test_request_without_args_or_cronjob_is_refused(kube_cluster, run_playbook, ca_pem):
    env = Env(kube_cluster, run_playbook, ca_pem)
    res = env.run()
    assert res.returncode != 0
    assert res.result('Check the request').get('failed') is True, _brief(res)
    assert env.get('namespace', env.namespace) is None or env.items('jobs') == []


def test_failed_job_reports_failure_fast(kube_cluster, run_playbook, ca_pem):
    env = Env(kube_cluster, run_playbook, ca_pem)
    try:
        # The simulated pod fails on this annotation (tests/cluster/kubesim/main.go:11).
        res = env.run(config_pod_annotations={'sim.fediops.test/fail': 'true'}, tootctl_args=['version'],
                      tootctl_timeout=300)
        assert res.returncode != 0, _brief(res)
        out = res.result(JOB_TASK)
        assert out.get('failed') is True, _brief(res)
        assert res.elapsed < 45, 'the failed Job was noticed only after %.0f s' % res.elapsed
        (job,) = env.items('jobs')
        assert job['spec']['template']['metadata']['annotations'] == {'sim.fediops.test/fail': 'true'}
        conditions = {c['type']: c['status'] for c in job['status'].get('conditions', [])}
        assert conditions.get('Failed') == 'True', job['status']
        assert job['metadata']['name'] in json.dumps(out), out
    finally:
        kube_cluster.kubectl('delete', 'namespace', env.namespace, '--ignore-not-found', '--wait=false', check=False)
