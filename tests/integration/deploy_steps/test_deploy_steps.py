# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/deploy.yml as one plan and visible steps (docs/dev/ARCHITECTURE.md section 1), against the local
Kubernetes API server and the DigitalOcean API stand-in:

- every step is a task of its own, with its time (ansible.posix.profile_tasks) and progress lines while it
  waits, at the default verbosity;
- an upgrade at -vvv shows no generated secret (read back from <name>-generated-secrets), no database password,
  no token, and leaves no plan directory behind;
- --tags web re-applies web alone (after the plan), --start-at-task Sidekiq plans for itself;
- a step given a plan made from other variables refuses it, naming that the variables differ, not the values.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEPLOY = os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'molecule', 'default', 'files'))
from do_standin.fixtures import KUBERNETES_CLUSTER_ID  # noqa: E402  pylint: disable=wrong-import-position

INSTALLED, UPGRADE = 'v4.5.2', 'v4.5.3'
STEP_TASKS = ['Plan (every check; nothing is written)', 'Config',
              'Stop for the upgrade with downtime (only with config_upgrade_with_downtime)', 'Pre-deployment migrations', 'Web', 'Streaming',
              'Sidekiq', 'Point of no return', 'Post-deployment migrations',
              'Finish (record the outcome, remove the plan\'s directory)']
RUN_TIMEOUT = 600
NOTE = {'example.test/note': 'steps'}


class Runner(object):
    def __init__(self, kube, standin, workdir, namespace):
        self.kube, self.standin, self.workdir, self.namespace = kube, standin, workdir, namespace
        self.tmp = os.path.join(workdir, 'tmp')  # TMPDIR of the runs: where the plan's directory is made
        os.makedirs(self.tmp)
        self.count = 0

    def variables(self, version=UPGRADE, **extra):
        out = {
            'config_namespace': self.namespace, 'config_name': 'mastodon', 'config_mastodon_version': version,
            'config_local_domain': 'social.example.test', 'config_database_source': 'digitalocean',
            'config_do_database_cluster': 'mastodon-pg', 'config_do_redis_cluster': 'mastodon-valkey',
            'config_do_api_base_url': self.standin.base_url, 'config_do_ca_path': self.standin.ca_file,
            'config_do_kubernetes_cluster_id': KUBERNETES_CLUSTER_ID,
            'config_tls_preflight': False,  # the stand-in's database hosts cannot be connected to
            'config_media_ephemeral': True, 'web_replicas': 2, 'streaming_replicas': 2,
            'web_wait_timeout': 180, 'streaming_wait_timeout': 180, 'sidekiq_wait_timeout': 180,
            'migrations_wait_timeout': 180,
        }
        out.update(extra)
        return out

    def run(self, variables, args=(), callback='default', playbook=DEPLOY):
        self.count += 1
        extra = os.path.join(self.workdir, 'vars-%d.json' % self.count)
        fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(variables, handle)
        env = dict(os.environ)
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT))),
            'ANSIBLE_STDOUT_CALLBACK': callback, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false', 'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
            'K8S_AUTH_KUBECONFIG': self.kube.kubeconfig, 'DIGITALOCEAN_ACCESS_TOKEN': self.standin.token,
            'TMPDIR': self.tmp,
        })
        if callback == 'default':
            env['ANSIBLE_CALLBACKS_ENABLED'] = 'ansible.posix.profile_tasks'
        done = subprocess.run(['ansible-playbook', '-i', 'localhost,', '-c', 'local', playbook, '-e', '@' + extra]
                              + list(args), capture_output=True, text=True, env=env, cwd=self.workdir,
                              timeout=RUN_TIMEOUT, check=False)
        data = None
        if callback == 'json':
            try:
                data = json.loads(done.stdout)
            except ValueError:
                data = None
        return done, data

    def plan_dirs(self):
        return [name for name in os.listdir(self.tmp) if name.startswith('fediops-plan-')]


def failures(done, data=None):
    """The messages of the failed tasks (json callback), else the end of the output."""
    if data:
        found = ['%s: %s' % (name, result.get('msg')) for name, result in tasks_of(data) if result.get('failed')]
        if found:
            return '\n'.join(found)[:6000]
    text = done.stdout + done.stderr
    found = re.findall(r'^fatal: .*$', text, re.M)
    return '\n'.join(f[:3000] for f in found) or text[-6000:]


def tasks_of(data):
    """[(task name, result)] of localhost in order, from the json callback."""
    return [(task['task']['name'], task['hosts']['localhost']) for play in data['plays'] for task in play['tasks']
            if 'localhost' in task['hosts']]


def ran(data):
    return [name for name, result in tasks_of(data) if not result.get('skipped')]


@pytest.fixture(scope='module')
def runner(kube_cluster, do_standin_session, tmp_path_factory):
    do_standin_session.reset()
    namespace = 'steps-' + secrets.token_hex(3)
    out = Runner(kube_cluster, do_standin_session, str(tmp_path_factory.mktemp('steps')), namespace)
    yield out
    kube_cluster.kubectl('delete', 'namespace', namespace, '--wait=false', check=False)


def test_a_deploy_shows_each_step_with_its_time_and_progress(runner):
    done, dummy = runner.run(runner.variables(INSTALLED))
    output = done.stdout + done.stderr
    assert done.returncode == 0, failures(done)
    headers = [h for h in re.findall(r'^TASK \[([^\]]+)\]', done.stdout, re.M) if 'config_files_hosts' not in h]
    assert headers == STEP_TASKS, headers
    # profile_tasks: every step with its time in the closing list
    for name in STEP_TASKS:
        assert re.search(r'^%s -+ \d+\.\d+s$' % re.escape(name), done.stdout, re.M), (name, done.stdout[-3000:])
    # progress lines while the rollouts wait, at the default verbosity
    progress = re.findall(r'^(web|streaming|sidekiq): \S+ \d+/\d+ updated, \d+/\d+ ready \(\d+ s\)$', output, re.M)
    assert 'web' in progress and 'sidekiq' in progress, output[-6000:]
    assert runner.plan_dirs() == []


def test_an_upgrade_at_vvv_shows_no_secret_and_leaves_no_plan_behind(runner):
    done, dummy = runner.run(runner.variables(UPGRADE), ['-vvv'])
    output = done.stdout + done.stderr
    assert done.returncode == 0, failures(done)
    listed = runner.kube.kubectl('-n', runner.namespace, 'get', 'secret', 'mastodon-generated-secrets', '-o', 'json')
    generated = dict((k, base64.b64decode(v).decode()) for k, v in json.loads(listed.stdout)['data'].items())
    assert 'SECRET_KEY_BASE' in generated and len(generated) >= 5
    seeded = dict(('generated %s' % k, v) for k, v in generated.items())
    seeded['DigitalOcean token'] = runner.standin.token
    for user in runner.standin.cluster('mastodon-pg').get('users') or []:
        seeded['database password of %s' % user['name']] = user['password']
    leaks = [label for label, value in seeded.items() if len(value) >= 8 and value in output]
    assert not leaks, leaks
    assert 'mastodon_deploy_plan' in output  # the fact is there, holding a path only
    assert runner.plan_dirs() == [], 'the plan directory was left behind'
    assert re.search(r'^web: .* \(\d+ s\)$', output, re.M), output[-4000:]
    # An excerpt for the reader of the test log: the steps, their progress and their times.
    shown = [line for line in output.splitlines()
             if re.match(r'(TASK \[|(web|streaming|sidekiq|migrate-pre|migrate-post|gate): |\S.* -{3,} \d+\.\d+s$)', line)]
    print('upgrade %s -> %s at -vvv, excerpt:\n%s' % (INSTALLED, UPGRADE, '\n'.join(shown)))


def test_tags_web_re_applies_web_alone(runner):
    # a change of web alone (web_replicas would change the pool size, hence the environment of every component)
    done, data = runner.run(runner.variables(UPGRADE, web_pod_annotations=NOTE), ['--tags', 'web'], callback='json')
    assert done.returncode == 0, failures(done, data)
    assert ran(data) == [STEP_TASKS[0], 'Web', STEP_TASKS[-1]], ran(data)
    web = dict(tasks_of(data))['Web']
    assert web['changed'] and web['step'] == 'web'
    assert [o['kind'] for o in web['objects'] if o['action'] == 'configured'] == ['Deployment']
    # finish removes the fact too (a fact cache must not hand a later job a plan that is gone)
    assert dict(tasks_of(data))[STEP_TASKS[-1]]['ansible_facts'] == {'mastodon_deploy_plan': None}
    note = runner.kube.kubectl('-n', runner.namespace, 'get', 'deployment', 'mastodon-web', '-o',
                               'jsonpath={.spec.template.metadata.annotations.example\\.test/note}')
    assert note.stdout.strip() == 'steps'
    assert runner.plan_dirs() == []


def test_start_at_the_sidekiq_step_plans_for_itself(runner):
    done, data = runner.run(runner.variables(UPGRADE, web_pod_annotations=NOTE), ['--start-at-task', 'Sidekiq'],
                            callback='json')
    assert done.returncode == 0, failures(done, data)
    assert ran(data) == ['Sidekiq', 'Point of no return', 'Post-deployment migrations', STEP_TASKS[-1]], ran(data)
    results = dict(tasks_of(data))
    assert results['Sidekiq']['step'] == 'sidekiq' and not results['Sidekiq']['changed']
    assert results['Sidekiq']['planned_here'] and results['Post-deployment migrations']['planned_here']
    assert runner.plan_dirs() == []


def test_a_plan_made_from_other_variables_is_refused(runner):
    playbook = os.path.join(runner.workdir, 'other-variables.yml')
    with open(playbook, 'w', encoding='utf-8') as handle:
        handle.write('''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      fediops.mastodon.mastodon_deploy:
        step: plan
    - name: Change a variable after the plan (one that the extra variables do not set)
      ansible.builtin.set_fact:
        streaming_wait: false
    - name: Web
      fediops.mastodon.mastodon_deploy:
        step: web
      ignore_errors: true
    - name: Finish
      fediops.mastodon.mastodon_deploy:
        step: finish
''')
    done, data = runner.run(runner.variables(UPGRADE, web_pod_annotations=NOTE), callback='json',
                            playbook=playbook)
    web = dict(tasks_of(data))['Web']
    assert web.get('failed') and 'made from other variables' in web['msg'], web
    assert 'false' not in web['msg'].lower()  # the values are not named
    assert runner.plan_dirs() == []


def test_the_quick_start_with_roles_plans_once(runner):
    """README.md's quick start (playbooks/examples/deploy_with_roles.yml): the roles apply the plan task's plan."""
    example = os.path.join(COLLECTION_ROOT, 'playbooks', 'examples', 'deploy_with_roles.yml')
    with open(os.path.join(COLLECTION_ROOT, 'README.md'), encoding='utf-8') as handle:
        readme = handle.read()
    with open(example, encoding='utf-8') as handle:
        assert '```yaml\n%s```' % handle.read() in readme
    done, data = runner.run(runner.variables(UPGRADE, web_pod_annotations={'example.test/note': 'roles'}),
                            callback='json', playbook=example)
    assert done.returncode == 0, failures(done, data)
    deploys = [(name, result) for name, result in tasks_of(data) if result.get('action') == 'fediops.mastodon.mastodon_deploy']
    steps_run = [result.get('step') for name, result in deploys]
    assert steps_run == [None, 'config', 'migrate-pre', 'web', 'streaming', 'sidekiq', 'migrate-post', 'finish'], deploys
    assert [name for name, result in deploys if result.get('planned_here')] == []
    assert 'mastodon_deploy_plan' in deploys[0][1]['ansible_facts']
    web = [result for name, result in deploys if result.get('step') == 'web'][0]
    assert web['changed']
    assert runner.plan_dirs() == []


def test_files_never_run_ahead_of_the_in_cluster_check(runner):
    """With config_files_hosts, every check of the plan runs before the first file is copied, the in-cluster TLS
    check included (the staging plan of the one-task deploy skipped it, as it writes a Job): here it cannot run
    (its namespace does not exist), so the plan stops and no file is written."""
    files = os.path.join(runner.workdir, 'node')
    os.makedirs(files)
    variables = runner.variables(UPGRADE, config_namespace='steps-missing-' + secrets.token_hex(3),
                                 config_manage_namespace=True, config_tls_preflight=True,
                                 config_tls_preflight_in_cluster=True, config_files_hosts=['localhost'],
                                 config_files_env_dest=os.path.join(files, '.env.production'),
                                 config_files_ca_dest=os.path.join(files, 'db-ca.crt'),
                                 config_files_owner='root', config_files_group='root')
    done, data = runner.run(variables, callback='json')
    assert done.returncode != 0
    failed = [(name, result) for name, result in tasks_of(data) if result.get('failed')]
    assert [name for name, dummy in failed] == [STEP_TASKS[0]], failed
    assert 'config_tls_preflight_in_cluster' in failed[0][1]['msg']
    assert os.listdir(files) == []
    assert runner.plan_dirs() == []


def test_held_post_migrations_run_later_with_the_tag(kube_cluster, do_standin_session, tmp_path):
    """docs/docsite/rst/guide_upgrade.rst: migrations_post=hold stops after the rollout and says how to go on;
    --tags post-migrations -e migrations_post=run then runs the gate and the Job."""
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path), 'steps-hold-' + secrets.token_hex(3))
    try:
        done, data = runner.run(runner.variables(INSTALLED, migrations_post='hold'), callback='json')
        assert done.returncode == 0, failures(done, data)
        results = dict(tasks_of(data))
        assert '--tags post-migrations -e migrations_post=run' in results['Post-deployment migrations']['msg']
        assert not results['Post-deployment migrations']['changed']
        jobs = kube_cluster.kubectl('-n', runner.namespace, 'get', 'jobs', '-o', 'name').stdout
        assert 'migrate-pre' in jobs and 'migrate-post' not in jobs, jobs
        done, data = runner.run(runner.variables(INSTALLED, migrations_post='run'), ['--tags', 'post-migrations'],
                                callback='json')
        assert done.returncode == 0, failures(done, data)
        assert ran(data) == [STEP_TASKS[0], 'Point of no return', 'Post-deployment migrations', STEP_TASKS[-1]]
        assert dict(tasks_of(data))['Post-deployment migrations']['changed']
        jobs = kube_cluster.kubectl('-n', runner.namespace, 'get', 'jobs', '-o', 'name').stdout
        assert 'migrate-post' in jobs, jobs
    finally:
        kube_cluster.kubectl('delete', 'namespace', runner.namespace, '--wait=false', check=False)
