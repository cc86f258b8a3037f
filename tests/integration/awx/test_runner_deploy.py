# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deploy run the way AWX runs a job: ansible-runner over a private data dir.

AWX writes the job into a private data dir (project/, inventory/, env/extravars with the job
template's extra variables and survey answers, env/envvars with what the credentials inject) and
runs ansible-runner on it inside the execution environment. Here the test venv stands in for the
EE (the collection is found through ANSIBLE_COLLECTIONS_PATH, as in /usr/share/ansible/collections
of an EE), the local Kubernetes API server for DOKS and the API stand-in for DigitalOcean.

The project is docs/awx/project (deploy.yml imports fediops.mastodon.deploy), the extra variables
are docs/awx/job_template.yml's, plus the survey's default: the documented setup is what runs.
The job must succeed twice, the second time with changed=0 in runner's stats, and nothing runner
keeps (stdout, job_events, ...) may contain the token, a database password or a generated secret.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml

from awx_helpers import COLLECTION_ROOT, collections_path, tool

AWX_DIR = os.path.join(COLLECTION_ROOT, 'docs', 'awx')
RUN_TIMEOUT = 900

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')),
                                reason='playbooks/deploy.yml has not landed yet')


def _job_template():
    with open(os.path.join(AWX_DIR, 'job_template.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def _private_data_dir(path, extravars, envvars):
    """The layout AWX hands to ansible-runner."""
    os.makedirs(os.path.join(path, 'project'))
    shutil.copy(os.path.join(AWX_DIR, 'project', 'deploy.yml'), os.path.join(path, 'project', 'deploy.yml'))
    os.makedirs(os.path.join(path, 'inventory'))
    inventory = {'all': {'hosts': {'localhost': {'ansible_connection': 'local',
                                                 'ansible_python_interpreter': sys.executable}}}}
    with open(os.path.join(path, 'inventory', 'hosts.yml'), 'w', encoding='utf-8') as handle:
        yaml.safe_dump(inventory, handle)
    os.makedirs(os.path.join(path, 'env'))
    for name, data in (('extravars', extravars), ('envvars', envvars)):
        with open(os.path.join(path, 'env', name), 'w', encoding='utf-8') as handle:
            yaml.safe_dump(data, handle)
        os.chmod(os.path.join(path, 'env', name), 0o600)
    with open(os.path.join(path, 'env', 'settings'), 'w', encoding='utf-8') as handle:
        yaml.safe_dump({'idle_timeout': 600, 'job_timeout': RUN_TIMEOUT}, handle)


class Job(object):
    def __init__(self, pdd, ident, completed):
        self.artifacts = os.path.join(pdd, 'artifacts', ident)
        self.completed = completed

    def read(self, name):
        with open(os.path.join(self.artifacts, name), encoding='utf-8') as handle:
            return handle.read().strip()

    def events(self):
        out = []
        for path in sorted(glob.glob(os.path.join(self.artifacts, 'job_events', '*.json'))):
            with open(path, encoding='utf-8') as handle:
                out.append(json.load(handle))
        return sorted(out, key=lambda event: event.get('counter', 0))  # the file names sort as text

    def stats(self):
        found = [e for e in self.events() if e.get('event') == 'playbook_on_stats']
        assert found, 'no playbook_on_stats event'
        return found[-1]['event_data']

    def changed_tasks(self):
        return ['%s (%s)' % (e['event_data'].get('task'), e['event_data'].get('role', ''))
                for e in self.events()
                if e.get('event') == 'runner_on_ok' and e['event_data'].get('res', {}).get('changed')]


def _run(pdd, ident, env=None, streamed=False):
    """`ansible-runner run`, or with streamed=True what AWX does through receptor: `transmit` packs the
    private data dir into a stream, `worker` unpacks it into a directory of its own on the execution
    node and runs the job there, `process` turns the returned stream into artifacts in `pdd`."""
    if not streamed:
        completed = subprocess.run([tool('ansible-runner'), 'run', pdd, '-p', 'deploy.yml', '--ident', ident],
                                   capture_output=True, text=True, timeout=RUN_TIMEOUT + 60, check=False, env=env)
        return Job(pdd, ident, completed)
    worker_dir = pdd + '-worker-' + ident
    pipeline = ('"$R" transmit "$1" -p deploy.yml --ident "$2" | "$R" worker --private-data-dir "$3" --delete'
                ' | "$R" process "$1" --ident "$2"')
    completed = subprocess.run(['bash', '-o', 'pipefail', '-c', pipeline, 'pipeline', pdd, ident, worker_dir],
                               capture_output=True, text=True, timeout=RUN_TIMEOUT + 60, check=False,
                               env=dict(env or os.environ, R=tool('ansible-runner')))
    assert not os.path.exists(worker_dir), 'the worker left its private data dir behind'
    return Job(pdd, ident, completed)


def _task_of(path):
    if not path.endswith('.json') or 'job_events' not in path:
        return ''
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle).get('event_data', {})
    return ' (task %r of role %r, module %s)' % (data.get('task'), data.get('role'), data.get('task_action'))


def _secrets_in_cluster(kube_cluster, namespace):
    """Every value of every Secret the deploy created (generated secrets, env Secret, CA)."""
    done = kube_cluster.kubectl('-n', namespace, 'get', 'secrets', '-o', 'json')
    values = {}
    for item in json.loads(done.stdout)['items']:
        for key, value in (item.get('data') or {}).items():
            values['%s/%s' % (item['metadata']['name'], key)] = base64.b64decode(value).decode('utf-8', 'replace')
    return values


def _extravars(do_api, namespace):
    """The job template's extra variables and the survey's default answer, pointed at the stand-in."""
    template = _job_template()
    extravars = dict(template['extra_vars'])
    extravars.update({q['variable']: q['default'] for q in template['survey_spec']['spec']})
    extravars.update({
        'config_namespace': namespace,
        # the stand-in instead of https://api.digitalocean.com, and the CA its certificate is signed by
        'config_do_api_base_url': do_api.base_url,
        'config_do_ca_path': do_api.ca_file,
        # the stand-in's database endpoints (*.standin.invalid) cannot be connected to
        'config_tls_preflight': False,
    })
    return extravars


def _common_envvars(do_api):
    return {
        # what the custom DigitalOcean credential type injects (docs/awx/credential_type_digitalocean.yml)
        'DIGITALOCEAN_ACCESS_TOKEN': do_api.token,
        # the execution environment's collections (/usr/share/ansible/collections in an EE)
        'ANSIBLE_COLLECTIONS_PATH': collections_path(),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
    }


def _uploads_claim(kube_cluster, namespace):
    """The job template keeps uploads on the PersistentVolumeClaim config_media_volume_claim names; the operator
    creates it (the deploy refuses a claim that does not exist once the namespace does)."""
    claim = _job_template()['extra_vars']['config_media_volume_claim']
    manifest = ('apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n'
                'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s, namespace: %s}\n'
                'spec: {accessModes: [ReadWriteMany], resources: {requests: {storage: 1Gi}}}\n' % (namespace, claim, namespace))
    done = kube_cluster.kubectl('apply', '-f', '-', input=manifest, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _run_twice_and_check(kube_cluster, do_api, pdd, namespace, runner_env=None, streamed=False):
    _uploads_claim(kube_cluster, namespace)
    first = _run(pdd, 'first', runner_env, streamed)
    assert first.read('status') == 'successful', first.completed.stdout[-8000:] + first.completed.stderr[-3000:]
    assert first.read('rc') == '0'
    stats = first.stats()
    assert not stats.get('failures') and not stats.get('dark'), stats
    assert stats['changed'].get('localhost', 0) > 0, stats
    # One job event per step (the job output lists them), and the waits' progress lines as events of their own,
    # printed by the action plugin in its worker process through Ansible's display.
    started = [e['event_data'].get('task') for e in first.events() if e.get('event') == 'playbook_on_task_start']
    for name in ('Config', 'Pre-deployment migrations', 'Web', 'Streaming', 'Sidekiq', 'Point of no return',
                 'Post-deployment migrations'):
        assert name in started, started
    progress = [e for e in first.events()
                if re.search(r'^(web|streaming|sidekiq): \S+ \d+/\d+ updated, \d+/\d+ ready \(\d+ s\)',
                             e.get('stdout') or '', re.M)]
    assert progress, [e.get('stdout') for e in first.events()][-60:]
    stream = [(e['event'], e['event_data'].get('task') if e['event'] == 'playbook_on_task_start' else e.get('stdout'))
              for e in first.events() if e['event'] in ('playbook_on_task_start', 'verbose')]
    print('event stream (task starts and verbose lines): %s' % json.dumps(stream)[:4000])

    second = _run(pdd, 'second', runner_env, streamed)
    assert second.read('status') == 'successful', second.completed.stdout[-8000:] + second.completed.stderr[-3000:]
    stats = second.stats()
    print('second run stats:', json.dumps(stats, sort_keys=True))
    assert stats['changed'].get('localhost', 0) == 0, 'second run changed: %s' % second.changed_tasks()
    assert stats['ok'].get('localhost', 0) > 0

    # The deploy really happened (in the namespace this job named).
    done = kube_cluster.kubectl('-n', namespace, 'get', 'deployments', '-o', 'name')
    assert 'web' in done.stdout and 'streaming' in done.stdout and 'sidekiq' in done.stdout, done.stdout

    # Nothing runner keeps may hold a secret.
    cluster = do_api.cluster('mastodon-pg')
    seeded = {'DigitalOcean token': do_api.token}
    for name in ('mastodon-pg', 'mastodon-valkey'):
        for user in do_api.cluster(name).get('users') or []:
            seeded['%s password of %s' % (name, user['name'])] = user['password']
    for pool in do_api.fixtures.get('pools', {}).get(cluster['id'], []):
        if pool.get('connection', {}).get('password'):
            seeded['pool %s password' % pool['name']] = pool['connection']['password']
    in_cluster = _secrets_in_cluster(kube_cluster, namespace)
    generated = {k: v for k, v in in_cluster.items()
                 if k.split('/', 1)[1] in ('SECRET_KEY_BASE', 'OTP_SECRET', 'VAPID_PRIVATE_KEY',
                                           'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY',
                                           'ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY',
                                           'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT', 'DB_PASS')}
    assert any(k.endswith('/SECRET_KEY_BASE') for k in generated), sorted(in_cluster)
    seeded.update(generated)
    seeded.update(_extra_secrets(pdd))
    assert all(len(v) >= 8 for v in seeded.values())

    files = [p for p in glob.glob(os.path.join(pdd, 'artifacts', '**', '*'), recursive=True) if os.path.isfile(p)]
    # artifacts/<ident>/command is runner's record of its own input (command line, cwd and the full
    # environment, which holds what the credentials injected); runner writes it mode 0600 and AWX never
    # shows or keeps it. Everything else (stdout, job_events, status, rc, fact cache) must be clean.
    commands = [p for p in files if os.path.basename(p) == 'command']
    assert streamed or commands
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in commands)
    files = [p for p in files if p not in commands]
    assert any(os.path.basename(p) == 'stdout' for p in files)
    assert sum('job_events' in p for p in files) > 20
    leaks = []
    for path in files:
        with open(path, 'rb') as handle:
            content = handle.read()
        for label, value in seeded.items():
            for prefix, form in (('', value.encode()), ('base64 of ', base64.b64encode(value.encode()))):
                if form in content:
                    leaks.append('%s%s in %s%s' % (prefix, label, os.path.relpath(path, pdd), _task_of(path)))
    print('artifacts searched: %d files, %d secret values (%s): %d found'
          % (len(files), len(seeded), ', '.join(sorted(seeded)), len(leaks)))
    assert not leaks, 'secrets in the job output:\n' + '\n'.join(sorted(set(leaks)))
    kube_cluster.kubectl('delete', 'namespace', namespace, '--wait=false', check=False)


def _extra_secrets(pdd):
    """Credential values the job was given besides the DigitalOcean token (the Kubernetes bearer token)."""
    with open(os.path.join(pdd, 'env', 'envvars'), encoding='utf-8') as handle:
        envvars = yaml.safe_load(handle)
    return {'Kubernetes bearer token': envvars['K8S_AUTH_API_KEY']} if envvars.get('K8S_AUTH_API_KEY') else {}


def test_deploy_through_ansible_runner_twice(kube_cluster, do_standin_session, tmp_path):
    """Kubernetes access through a kubeconfig (K8S_AUTH_KUBECONFIG), as from a custom credential type."""
    do_api = do_standin_session
    do_api.reset()
    namespace = 'awx-runner-' + secrets.token_hex(3)
    envvars = _common_envvars(do_api)
    envvars.update({'K8S_AUTH_KUBECONFIG': kube_cluster.kubeconfig, 'KUBECONFIG': kube_cluster.kubeconfig})
    pdd = str(tmp_path / 'pdd')
    _private_data_dir(pdd, _extravars(do_api, namespace), envvars)
    _run_twice_and_check(kube_cluster, do_api, pdd, namespace)


def _guide_block(guide, needle):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs'))
    from docs_helpers import code_blocks  # pylint: disable=import-outside-toplevel
    return next(b.text for b in code_blocks(guide) if needle in b.text)


def _kubeconfig_ca(kubeconfig):
    with open(kubeconfig, encoding='utf-8') as handle:
        config = yaml.safe_load(handle)
    cluster = config['clusters'][0]['cluster']
    if cluster.get('certificate-authority-data'):
        return base64.b64decode(cluster['certificate-authority-data']).decode('ascii')
    with open(os.path.join(os.path.dirname(kubeconfig), cluster['certificate-authority']), encoding='utf-8') as handle:
        return handle.read()


def test_deploy_with_the_awx_kubernetes_credential(kube_cluster, do_standin_session, tmp_path):
    """Kubernetes access exactly as AWX's "OpenShift or Kubernetes API Bearer Token" credential gives it:
    K8S_AUTH_HOST, K8S_AUTH_API_KEY, K8S_AUTH_VERIFY_SSL and K8S_AUTH_SSL_CA_CERT (a file in the private
    data dir), and no kubeconfig at all. The ServiceAccount token is made with the commands of the AWX guide.
    The job goes through ansible-runner's transmit | worker | process, as AWX sends jobs to execution nodes."""
    do_api = do_standin_session
    do_api.reset()
    kube_cluster.kubectl('delete', 'namespace', 'mastodon', '--ignore-not-found', '--wait=true')
    commands = _guide_block('guide_awx', 'create token')
    # The guide's least-privilege set: a namespaced Role only, and a token of the ServiceAccount it binds.
    with open(os.path.join(COLLECTION_ROOT, 'docs', 'rbac', 'deployer.yml'), encoding='utf-8') as handle:
        # One List document (ansible-test's yamllint takes one document a file).
        rbac = [item for doc in yaml.safe_load_all(handle) if doc for item in (doc.get('items') or [doc])]
    assert {doc['kind'] for doc in rbac} == {'ServiceAccount', 'Role', 'RoleBinding'}, rbac
    account = next(doc['metadata']['name'] for doc in rbac if doc['kind'] == 'ServiceAccount')
    assert 'create token %s --duration=1h' % account in commands
    assert 'cluster-admin' not in commands and 'clusterrole' not in commands
    done = subprocess.run(['bash', '-euo', 'pipefail'], input=commands, capture_output=True, text=True, check=False,
                          env=dict(os.environ, KUBECONFIG=kube_cluster.kubeconfig), timeout=120,
                          cwd=COLLECTION_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.count('.') == 2, done.stdout  # a JWT

    namespace = 'awx-bearer-' + secrets.token_hex(3)
    pdd = str(tmp_path / 'pdd')
    envvars = _common_envvars(do_api)
    envvars.update({'K8S_AUTH_HOST': kube_cluster.api_url, 'K8S_AUTH_API_KEY': token, 'K8S_AUTH_VERIFY_SSL': 'True'})
    _private_data_dir(pdd, _extravars(do_api, namespace), envvars)
    # AWX writes the CA into a file of the private data dir's env/ and points K8S_AUTH_SSL_CA_CERT at it.
    ca_file = os.path.join(pdd, 'env', 'tmp_k8s_ca')
    with open(ca_file, 'w', encoding='utf-8') as handle:
        handle.write(_kubeconfig_ca(kube_cluster.kubeconfig))
    os.chmod(ca_file, 0o600)
    envvars['K8S_AUTH_SSL_CA_CERT'] = ca_file
    with open(os.path.join(pdd, 'env', 'envvars'), 'w', encoding='utf-8') as handle:
        yaml.safe_dump(envvars, handle)
    # no kubeconfig anywhere: not in the environment, not in $HOME
    home = tmp_path / 'home'
    home.mkdir()
    runner_env = {k: v for k, v in os.environ.items() if k not in ('KUBECONFIG', 'K8S_AUTH_KUBECONFIG')}
    runner_env['HOME'] = str(home)
    _run_twice_and_check(kube_cluster, do_api, pdd, namespace, runner_env, streamed=True)
