# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the deploy benchmark (benchmarks/run.py): the local cluster, the DigitalOcean API stand-in,
ansible-playbook runs with the json callback, the API server audit log, and the generated playbooks."""
from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
HARNESS_UA = 'fediops-bench-harness'
# Requests of these clients are not the deploy's: the control plane, kubesim, the cluster's health checks, the harness.
NOT_CLIENT_UA = ('kube-controller-manager', 'kube-apiserver', 'kubesim', 'Python-urllib', HARNESS_UA)
WRITE_VERBS = ('create', 'update', 'patch', 'delete', 'deletecollection')
# Actions that run in the controller process; every other action starts a module process.
CONTROLLER_ACTIONS = ('include_role', 'include_tasks', 'import_tasks', 'import_role', 'assert', 'set_fact', 'debug',
                      'meta', 'validate_argument_spec', 'fail', 'include_vars', 'pause')
COLLECTION_PARTS = ('galaxy.yml', 'meta', 'plugins', 'roles', 'playbooks', 'requirements.txt', 'README.md', 'COPYING')


def log(msg):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def summary(values):
    """Median, min, max and the values themselves (seconds or counts)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return dict(median=round(statistics.median(values), 3), min=round(min(values), 3), max=round(max(values), 3),
                n=len(values), values=[round(v, 3) for v in values])


def copy_collection(dest_root):
    """A snapshot of the collection as ansible_collections/fediops/mastodon, so every run uses the same code."""
    dest = Path(dest_root) / 'ansible_collections' / 'fediops' / 'mastodon'
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for part in COLLECTION_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return Path(dest_root)


class Cluster(object):
    """The local cluster of tests/cluster, started with its command line (audit log on) in a state dir of ours."""

    def __init__(self, state_dir, kubeconfig=None):
        self.state_dir = Path(state_dir)
        self.started = False
        self.kubeconfig = kubeconfig
        self.audit_log = self.state_dir / 'logs' / 'audit.log'

    def cli(self, *args):
        return subprocess.run([sys.executable, str(REPO / 'tests' / 'cluster' / 'localcluster.py')] + list(args)
                              + ['--state-dir', str(self.state_dir)], check=True, stdout=subprocess.PIPE, text=True)

    def start(self):
        out = self.cli('start').stdout.strip().splitlines()
        self.kubeconfig = out[-1].strip()
        self.started = True
        return self.kubeconfig

    def stop(self):
        if self.started:
            self.cli('stop')
            self.started = False

    def audit_offset(self):
        try:
            return self.audit_log.stat().st_size
        except OSError:
            return 0

    def audit_events(self, start, settle=1.0):
        """Client requests logged since byte offset start (after a short pause so the log is complete)."""
        time.sleep(settle)
        events = []
        with open(self.audit_log, 'rb') as handle:
            handle.seek(start)
            data = handle.read()
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get('stage') != 'ResponseComplete':
                continue
            agent = event.get('userAgent', '')
            if agent.startswith(NOT_CLIENT_UA):
                continue
            events.append(event)
        return events


def count_requests(events):
    """Requests by verb. `writes` counts every write verb, server-side dry-runs included (mastodon_deploy's plan
    dry-runs every object, and each step its own component again unless the plan found it settled); `dry_runs` says how many of them were."""
    verbs = {}
    dry_runs = 0
    for event in events:
        verbs[event['verb']] = verbs.get(event['verb'], 0) + 1
        if event['verb'] in WRITE_VERBS and 'dryRun=All' in (event.get('requestURI') or ''):
            dry_runs += 1
    writes = sum(n for verb, n in verbs.items() if verb in WRITE_VERBS)
    return dict(total=len(events), writes=writes, dry_runs=dry_runs, by_verb=dict(sorted(verbs.items())))


class Standin(object):
    """The DigitalOcean API stand-in, started the way molecule/default does (its standin.sh)."""

    def __init__(self, state_dir):
        self.state_dir = Path(state_dir)
        self.script = REPO / 'molecule' / 'default' / 'standin.sh'
        self.base_url = None

    def start(self):
        out = subprocess.run(['bash', str(self.script), 'start', str(self.state_dir)], check=True,
                             stdout=subprocess.PIPE, text=True)
        self.base_url = out.stdout.strip().splitlines()[-1]
        return self.base_url

    def stop(self):
        subprocess.run(['bash', str(self.script), 'stop', str(self.state_dir)], check=False)

    def config_vars(self):
        token = (self.state_dir / 'token').read_text(encoding='utf-8').strip()
        return dict(config_database_source='digitalocean', config_do_database_cluster='mastodon-pg',
                    config_do_redis_cluster='mastodon-valkey', config_do_api_base_url=self.base_url,
                    config_do_ca_path=str(self.state_dir / 'ca.pem'), config_do_api_token=token)


def deploy_vars(namespace, extra_sidekiq_groups=0):
    """The deploy settings of the benchmark (those of molecule/default), with optional extra sidekiq worker groups."""
    workers = [
        dict(name='scheduler', queues=['scheduler'], concurrency=5, replicas=1),
        dict(name='default', queues=['default,8', 'push,6', 'ingress,4', 'mailers,2', 'pull', 'fasp'], concurrency=25,
             replicas=2),
    ]
    for index in range(extra_sidekiq_groups):
        workers.append(dict(name='extra-%03d' % index, queues=['default', 'pull'], concurrency=10, replicas=1))
    return dict(config_namespace=namespace, config_name='mastodon', config_mastodon_version='v4.5.2',
                config_local_domain='social.example.test', config_streaming_host='streaming.social.example.test',
                config_cdn_host='cdn.social.example.test', web_replicas=2, web_hpa_enabled=True,
                web_hpa_min_replicas=2, web_hpa_max_replicas=4, streaming_replicas=1, streaming_pdb_enabled=False,
                config_tls_preflight=False, config_media_ephemeral=True,
                sidekiq_workers=workers)


class Ansible(object):
    """Runs ansible-playbook with the json stdout callback against the collection snapshot."""

    def __init__(self, workdir, collections, kubeconfig):
        self.workdir = Path(workdir)
        self.env = dict(os.environ)
        for key in list(self.env):
            if key.startswith('ANSIBLE_') or key.startswith('K8S_AUTH_'):
                del self.env[key]
        self.env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_STDOUT_CALLBACK='ansible.posix.json',
                        ANSIBLE_LOCAL_TEMP=str(self.workdir / 'ansible-tmp'), ANSIBLE_RETRY_FILES_ENABLED='0',
                        ANSIBLE_NOCOLOR='1', K8S_AUTH_KUBECONFIG=str(kubeconfig), KUBECONFIG=str(kubeconfig),
                        ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        self.counter = 0

    def run(self, playbook, extra_vars=None):
        """Returns dict(rc, seconds, started, ended, output) where output is the json callback's document."""
        self.counter += 1
        args = ['ansible-playbook', '-i', 'localhost,', '-c', 'local', str(playbook)]
        if extra_vars:
            path = self.workdir / ('vars-%04d.json' % self.counter)
            path.write_text(json.dumps(extra_vars), encoding='utf-8')
            os.chmod(path, 0o600)
            args += ['-e', '@%s' % path]
        started = time.time()
        proc = subprocess.run(args, cwd=str(self.workdir), env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False)
        ended = time.time()
        try:
            output = json.loads(proc.stdout[proc.stdout.index('{'):])
        except ValueError:
            output = None
        if proc.returncode:
            failures = ['%s: %s' % (task['task']['name'], str(result.get('msg'))[:600])
                        for task, result in iter_host_results(output) if result.get('failed')]
            log('ansible-playbook %s failed (rc %d): %s %s' % (playbook, proc.returncode, '; '.join(failures),
                                                               proc.stderr[-1500:]))
        return dict(rc=proc.returncode, seconds=ended - started, started=started, ended=ended, output=output,
                    stderr=proc.stderr)


def iter_host_results(output):
    """(task, host result) for every task of the json callback's output that ran on localhost."""
    for play in (output or {}).get('plays', []):
        for task in play.get('tasks', []):
            result = task.get('hosts', {}).get('localhost')
            if result is not None:
                yield task, result


def task_counts(output):
    """Tasks executed (loop items counted one by one) and module invocations (tasks run by a module process)."""
    tasks = modules = 0
    for _task, result in iter_host_results(output):
        items = result.get('results') if isinstance(result.get('results'), list) else [result]
        action = result.get('action') or ''
        for item in items:
            if item.get('skipped'):
                continue
            tasks += 1
            if action.rsplit('.', 1)[-1] not in CONTROLLER_ACTIONS:
                modules += 1
    return dict(tasks=tasks, modules=modules)


def parse_iso(stamp):
    return datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp()


_PLAN_SCRIPT = """
import json, os, sys, yaml
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import plan, variables
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanClient
values = json.load(sys.stdin)
values['config_kubernetes'] = False
roles = os.path.join(os.path.dirname(plan.__file__), '..', '..', '..', 'roles')
def do_client(v):
    return DigitalOceanClient(token=v['config_do_api_token'], base_url=v['config_do_api_base_url'],
                              ca_path=v['config_do_ca_path'] or None)
deploy = plan.Deploy(values, variables.load_role_specs(roles, yaml.safe_load), plan.COMPONENTS, do_client=do_client).plan()
json.dump([['mastodon-set-' + c, deploy.manifests[c]] for c in plan.COMPONENTS], sys.stdout)
"""


def planned_sets(collections, values):
    """The objects mastodon_deploy renders for these variables, per component: [(apply_set, [objects])]. Built by
    the plan itself (plugins/module_utils/_deploy/, no cluster), Secret values included."""
    env = dict(os.environ, PYTHONPATH=str(collections))
    done = subprocess.run([sys.executable, '-c', _PLAN_SCRIPT], input=json.dumps(values), capture_output=True,
                          text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError('rendering the plan failed: %s' % done.stderr[-3000:])
    return [tuple(item) for item in json.loads(done.stdout)]


def rendered_sets(output):
    """The definitions each k8s_apply task of a deploy.yml run applied, in order: [(apply_set, [objects])]."""
    sets = []
    for _task, result in iter_host_results(output):
        if result.get('action') == 'fediops.mastodon.k8s_apply':
            args = result.get('invocation', {}).get('module_args', {})
            defs = args.get('definitions')
            if defs is None:
                raise RuntimeError('k8s_apply result without invocation.module_args.definitions')
            sets.append((args.get('apply_set'), defs))
    return sets


def retarget(sets, namespace):
    """The rendered sets with the namespace replaced (Namespace object renamed, metadata.namespace set)."""
    out = []
    for name, defs in sets:
        new = []
        for obj in defs:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault('metadata', {})
            if obj.get('kind') == 'Namespace':
                meta['name'] = namespace
                meta.pop('namespace', None)
            else:
                meta['namespace'] = namespace
            new.append(obj)
        out.append((name.replace('mastodon-set-', ''), new))
    return out


def object_count(sets):
    return sum(len(defs) for _name, defs in sets)


def _wait_condition(defs):
    if defs and all(obj.get('kind') == 'Job' for obj in defs):
        return dict(type='Complete', status='True')
    return None


def core_playbook(path, manifest_file, per_object, wait_timeout=600, ours=False, wait_sleep=None):
    """kubernetes.core.k8s: one task per role with the role's list of objects, or a loop of one object per task.
    Both use server-side apply and wait (Deployments rolled out; Jobs Complete, as our roles wait for them).
    With ours: fediops.mastodon.k8s_apply, one task per role, on the same files (the module without the roles)."""
    with open(manifest_file, encoding='utf-8') as handle:
        sets = json.load(handle)
    tasks = []
    for index, (name, defs) in enumerate(sets):
        if ours:
            namespace = [o['metadata']['namespace'] for o in defs if 'namespace' in o.get('metadata', {})][0]
            tasks.append({'name': 'Apply %s' % name, 'fediops.mastodon.k8s_apply': dict(
                definitions="{{ (lookup('ansible.builtin.file', '%s') | ansible.builtin.from_json)[%d][1] }}" % (
                    manifest_file, index),
                namespace=namespace, apply_set='bench-set-%s' % name, wait=True, wait_timeout=wait_timeout)})
            continue
        args = dict(state='present', apply=True, server_side_apply=dict(field_manager='bench-kubernetes-core'),
                    wait=True, wait_timeout=wait_timeout)
        if wait_sleep:
            args['wait_sleep'] = wait_sleep
        cond = _wait_condition(defs)
        if cond:
            args['wait_condition'] = cond
        lookup = "{{ (lookup('ansible.builtin.file', '%s') | ansible.builtin.from_json)[%d][1] }}" % (manifest_file, index)
        task = {'name': 'Apply %s' % name}
        if per_object:
            args['definition'] = '{{ item }}'
            task['kubernetes.core.k8s'] = args
            task['loop'] = lookup
            task['loop_control'] = dict(label="{{ item.kind }}/{{ item.metadata.name }}")
        else:
            args['definition'] = lookup
            task['kubernetes.core.k8s'] = args
        task['no_log'] = False
        tasks.append(task)
    play = [dict(name='deploy from rendered manifests (%s)' % ('per object' if per_object else 'per role'),
                 hosts='localhost', gather_facts=False, tasks=tasks)]
    Path(path).write_text(yaml.safe_dump(play, sort_keys=False, width=1000), encoding='utf-8')
    return path


def failure_playbook(path, manifest_file, tool, wait_timeout=60):
    """One task applying [Namespace, failing Job] and waiting: ours, or kubernetes.core with plain wait or a condition."""
    lookup = "{{ lookup('ansible.builtin.file', '%s') | ansible.builtin.from_json }}" % manifest_file
    if tool == 'ours':
        task = {'name': 'Apply the failing Job (k8s_apply)', 'fediops.mastodon.k8s_apply': dict(
            definitions=lookup, namespace='{{ bench_namespace }}', apply_set='bench-fail', wait=True,
            wait_timeout=wait_timeout)}
    else:
        args = dict(definition=lookup, apply=True, server_side_apply=dict(field_manager='bench-kubernetes-core'),
                    wait=True, wait_timeout=wait_timeout)
        if tool == 'core_condition':
            args['wait_condition'] = dict(type='Complete', status='True')
        task = {'name': 'Apply the failing Job (kubernetes.core.k8s)', 'kubernetes.core.k8s': args}
    task['ignore_errors'] = True
    play = [dict(name='failing migration Job', hosts='localhost', gather_facts=False, tasks=[task])]
    Path(path).write_text(yaml.safe_dump(play, sort_keys=False, width=1000), encoding='utf-8')
    return path


class PodFailureWatch(threading.Thread):
    """Polls the pods of a namespace every 0.1 s; records the wall time at which one was first seen Failed."""

    def __init__(self, kubeconfig, namespace, interval=0.1):
        super().__init__(daemon=True)
        from kubernetes import client, config  # pylint: disable=import-outside-toplevel
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api_client.user_agent = HARNESS_UA
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.interval = interval
        self.failed_at = None
        self.stop_flag = False

    def run(self):
        while not self.stop_flag and self.failed_at is None:
            try:
                pods = self.core.list_namespaced_pod(self.namespace, _request_timeout=5).items
            except Exception:  # pylint: disable=broad-except
                pods = []
            if any(pod.status and pod.status.phase == 'Failed' for pod in pods):
                self.failed_at = time.time()
                return
            time.sleep(self.interval)

    def stop(self):
        self.stop_flag = True


class Kube(object):
    """The harness's own API calls (user agent HARNESS_UA, left out of the counts)."""

    def __init__(self, kubeconfig):
        from kubernetes import client, config  # pylint: disable=import-outside-toplevel
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api_client.user_agent = HARNESS_UA
        self.client = client
        self.core = client.CoreV1Api(api_client)

    def secret_data(self, name, namespace):
        """The data (base64 values) of a Secret."""
        return dict(self.core.read_namespaced_secret(name, namespace).data or {})

    def create_namespace(self, name):
        self.core.create_namespace(self.client.V1Namespace(metadata=self.client.V1ObjectMeta(name=name)))

    def delete_namespace(self, name, timeout=180):
        try:
            self.core.delete_namespace(name)
        except self.client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.core.read_namespace(name)
            except self.client.ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.5)
        log('namespace %s still terminating after %ds' % (name, timeout))
