# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Zero downtime, measured: playbooks/deploy.yml against the local cluster while a watcher reads the EndpointSlices
of the web and streaming Services and the pods every 0.1 s.

  python benchmarks/zero_downtime.py [--kubeconfig PATH] [--output DIR]

Without --kubeconfig it starts its own local cluster (tests/cluster) and stops it at the end. Scenarios, in order,
after a first install of v4.6.4 (2 web, 2 streaming, a scheduler group and a 2-replica Sidekiq group):

  (a) upgrade to v4.6.5                      (b) a web-only change (web_concurrency -> WEB_CONCURRENCY)
  (c) a Sidekiq-only change (concurrency)    (d) an SMTP change (config_env: SMTP_*)
  (e) an upgrade to an image that never becomes ready (kubesim: an image reference containing "never-ready")

Per scenario: the lowest number of ready endpoints of each Service during the deploy and how long it lasted, the
streaming pods replaced (each one dropped its WebSockets: streaming/index.js:1427-1443), the wall time of the deploy
and of each Deployment's rollout; for (e) how soon the deploy reported the failure (progressDeadlineSeconds) and
which version mastodon_status says serves. The pods come up after a readiness delay (kubesim annotation
sim.fediops.test/delay-seconds) and terminate through their preStop hooks and grace periods (kubesim lifecycle.go),
both short here through the role variables. Prints a table; writes zero_downtime.json with --output.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402  pylint: disable=wrong-import-position
from benchlib import log  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'social'
READY_DELAY = '1'       # seconds a pod takes to become ready (kubesim)
PROGRESS_DEADLINE = 12  # seconds without progress before a rollout is failed (role variables, >= 10)
SMTP = {'SMTP_SERVER': 'smtp.example.test', 'SMTP_PORT': '587', 'SMTP_LOGIN': 'mastodon',
        'SMTP_FROM_ADDRESS': 'notifications@zd.example.test'}
SCENARIOS = (
    ('a', 'upgrade v4.6.4 -> v4.6.5', {'config_mastodon_version': 'v4.6.5'}),
    ('b', 'web only (web_concurrency)', {'web_concurrency': 3}),
    ('c', 'Sidekiq only (concurrency)', {'sidekiq_workers': 'c'}),
    ('d', 'SMTP change (config_env)', {'config_env': SMTP}),
    ('e', 'upgrade to a never-ready image', {'config_mastodon_version': 'v4.6.6',
                                             'config_image_repository': 'registry.example.test/mastodon-never-ready',
                                             'config_streaming_image_repository':
                                                 'registry.example.test/streaming-never-ready'}),
)


def workers(concurrency=5):
    return [{'name': 'scheduler', 'queues': ['scheduler'], 'concurrency': 2, 'replicas': 1},
            {'name': 'default', 'queues': ['default,8', 'push,6', 'ingress,4', 'mailers,2', 'pull', 'fasp'],
             'concurrency': concurrency, 'replicas': 2}]


def base_vars(namespace):
    """The install: explicit (fictional) database and Redis, no TLS preflight; short delays and grace periods."""
    delay = {'sim.fediops.test/delay-seconds': READY_DELAY}
    return dict(
        config_namespace=namespace, config_name=NAME, config_mastodon_version='v4.6.4',
        config_local_domain='zd.example.test', config_database_source='explicit', config_db_host='db.example.test',
        config_db_password='zd-not-a-real-password', config_redis_url='redis://redis.example.test:6379',
        config_media_ephemeral=True, config_tls_preflight=False,
        web_replicas=2, streaming_replicas=2, web_concurrency=2,
        web_pod_annotations=delay, streaming_pod_annotations=delay, sidekiq_pod_annotations=delay,
        web_prestop_delay_seconds=2, web_termination_grace_period_seconds=7,
        streaming_prestop_delay_seconds=1, streaming_termination_grace_period_seconds=6,
        sidekiq_quiet_seconds=1, sidekiq_shutdown_timeout_seconds=1, sidekiq_termination_grace_period_seconds=7,
        web_progress_deadline_seconds=PROGRESS_DEADLINE, streaming_progress_deadline_seconds=PROGRESS_DEADLINE,
        sidekiq_progress_deadline_seconds=PROGRESS_DEADLINE,
        web_wait_timeout=120, streaming_wait_timeout=120, sidekiq_wait_timeout=120,
        sidekiq_workers=workers(),
        # an explicit database: the point of no return asks for the operator's backup, made "an hour ago"
        migrations_backup_confirmed_at=(datetime.datetime.now(datetime.timezone.utc)
                                        - datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ'))


DEPLOY_PLAYBOOK = '- name: Deploy\n  ansible.builtin.import_playbook: fediops.mastodon.deploy\n'
STATUS_PLAYBOOK = '''- hosts: localhost
  gather_facts: false
  tasks:
    - name: status
      fediops.mastodon.mastodon_status:
        name: "%s"
        namespace: "{{ config_namespace }}"
''' % NAME


class Watch(threading.Thread):
    """Reads the EndpointSlices of the web and streaming Services and the pods of the namespace every `interval`
    seconds; keeps (time, {service: ready endpoints}, {pod uid: (component, name, ready, terminating)})."""

    def __init__(self, kubeconfig, namespace, interval=0.1):
        super(Watch, self).__init__(daemon=True)
        from kubernetes import client, config  # pylint: disable=import-outside-toplevel
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api_client.user_agent = benchlib.HARNESS_UA
        self.core = client.CoreV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.namespace = namespace
        self.interval = interval
        self.samples = []
        self.errors = 0
        self.stopping = threading.Event()

    def sample(self):
        ready = {'web': 0, 'streaming': 0}
        for item in self.discovery.list_namespaced_endpoint_slice(self.namespace, _request_timeout=5).items:
            service = (item.metadata.labels or {}).get('kubernetes.io/service-name', '')
            role = service[len(NAME) + 1:] if service.startswith(NAME + '-') else None
            if role in ready:
                ready[role] += sum(1 for e in item.endpoints or [] if e.conditions and e.conditions.ready)
        pods = {}
        for pod in self.core.list_namespaced_pod(self.namespace, _request_timeout=5).items:
            labels = pod.metadata.labels or {}
            component = labels.get('app.kubernetes.io/component', '')
            is_ready = any(c.type == 'Ready' and c.status == 'True' for c in (pod.status.conditions or []))
            pods[pod.metadata.uid] = (component, pod.metadata.name, is_ready, pod.metadata.deletion_timestamp is not None,
                                      labels.get('pod-template-hash', ''))
        return time.time(), ready, pods

    def run(self):
        while not self.stopping.is_set():
            try:
                self.samples.append(self.sample())
            except Exception:  # pylint: disable=broad-except
                self.errors += 1
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(10)


def analyse(samples, started, ended, replicas):
    """The figures of one scenario from the watcher's samples between `started` and `ended` (plus the settle)."""
    window = [s for s in samples if started <= s[0] <= ended]
    out = {}
    for role in ('web', 'streaming'):
        values = [(t, r[role]) for t, r, _p in window]
        low = min(v for _t, v in values)
        lasted = 0.0
        for (t0, v0), (t1, _v1) in zip(values, values[1:]):
            if v0 == low:
                lasted += t1 - t0
        out[role] = {'min_ready': low, 'min_lasted_s': round(lasted, 1), 'replicas': replicas[role]}
    first, last = window[0][2], window[-1][2]
    out['streaming_restarted'] = sum(1 for uid, p in first.items() if p[0] == 'streaming' and not p[3]
                                     and (uid not in last or last[uid][3]))
    rollouts = {}
    for role in ('web', 'streaming', 'sidekiq'):
        # The pods this deploy replaced: there at the start, gone or terminating at the end (an unchanged Sidekiq
        # group keeps its pods).
        replaced = set(uid for uid, p in first.items() if p[0] == role and not p[3] and (uid not in last or last[uid][3]))
        new_seen = [t for t, _r, pods in window if any(p[0] == role and uid not in first for uid, p in pods.items())]
        if not new_seen:
            rollouts[role] = None
            continue
        # Done: every replaced pod terminating or gone, every other pod of the component ready.
        done = [t for t, _r, pods in window if t >= new_seen[0]
                and not any(uid in pods and not pods[uid][3] for uid in replaced)
                and all(p[2] for p in pods.values() if p[0] == role and not p[3])]
        rollouts[role] = round(done[0] - new_seen[0], 1) if done else 'not finished'
    out['rollout_s'] = rollouts
    return out


def status_of(ansible, workdir, namespace):
    playbook = Path(workdir) / 'status.yml'
    playbook.write_text(STATUS_PLAYBOOK, encoding='utf-8')
    run = ansible.run(playbook, {'config_namespace': namespace})
    for task, result in benchlib.iter_host_results(run['output']):
        if task['task']['name'] == 'status':
            return result
    raise RuntimeError('mastodon_status did not run: %s' % run['stderr'][-2000:])


def plan_says_streaming_restarts(run):
    """What the deploy's summary announced for streaming: True (restarts), False (no restart), None (no line)."""
    for _task, result in benchlib.iter_host_results(run['output']):
        for line in str(result.get('summary') or '').splitlines():
            if line.strip().startswith('streaming: restarts'):
                return True
            if line.strip().startswith('streaming: no restart'):
                return False
    return None


def failure_message(run):
    for _task, result in benchlib.iter_host_results(run['output']):
        if result.get('failed'):
            return str(result.get('msg'))
    return ''


def measure(kubeconfig, workdir, collections, scenarios=SCENARIOS):
    """Run the install and the scenarios; returns {'scenarios': [...], 'namespace': ...}."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / 'ansible-tmp').mkdir(exist_ok=True)
    namespace = 'zd-' + uuid.uuid4().hex[:6]
    ansible = benchlib.Ansible(workdir, collections, kubeconfig)
    deploy = workdir / 'deploy.yml'
    deploy.write_text(DEPLOY_PLAYBOOK, encoding='utf-8')
    values = base_vars(namespace)
    replicas = {'web': values['web_replicas'], 'streaming': values['streaming_replicas']}
    log('install %s in %s' % (values['config_mastodon_version'], namespace))
    first = ansible.run(deploy, values)
    if first['rc']:
        raise RuntimeError('the first install failed: %s %s' % (failure_message(first), first['stderr'][-2000:]))
    watch = Watch(kubeconfig, namespace)
    watch.start()
    results = []
    try:
        time.sleep(1.0)
        for key, label, change in scenarios:
            change = dict(change)
            if change.get('sidekiq_workers') == 'c':
                change['sidekiq_workers'] = workers(concurrency=7)
            values.update(change)
            log('(%s) %s' % (key, label))
            run = ansible.run(deploy, values)
            # Let the last old pods finish their preStop and grace period before the next scenario.
            time.sleep(4.0)
            figures = analyse(watch.samples, run['started'], time.time(), replicas)
            figures.update(key=key, scenario=label, deploy_s=round(run['seconds'], 1), failed=bool(run['rc']),
                           plan_says_streaming_restarts=plan_says_streaming_restarts(run))
            if run['rc']:
                figures['message'] = failure_message(run)[:400]
                figures['reported_after_s'] = round(run['seconds'], 1)
                status = status_of(ansible, workdir, namespace)
                web = [c for c in status['components'] if c['component'] == 'web'][0]
                figures['status'] = {'healthy': status['healthy'], 'web_version': web['version'],
                                     'web_serving': web.get('serving_versions'), 'web_rollout': web['rollout'],
                                     'table': status['table']}
            results.append(figures)
    finally:
        watch.stop()
    return {'namespace': namespace, 'scenarios': results, 'watch_samples': len(watch.samples),
            'watch_errors': watch.errors, 'progress_deadline_s': PROGRESS_DEADLINE}


def table(report):
    lines = ['%-3s %-32s %-15s %-15s %-10s %-9s %-28s %s' % (
        '', 'scenario', 'web min ready', 'stream min rdy', 'stream rst', 'deploy s', 'rollout s (web/str/sidekiq)',
        'outcome')]
    for s in report['scenarios']:
        roll = s['rollout_s']
        outcome = 'ok'
        if s['failed']:
            serving = ','.join(s['status']['web_serving'] or []) or '?'
            outcome = 'failed after %ss; serving %s' % (s['reported_after_s'], serving)
        lines.append('%-3s %-32s %-15s %-15s %-10s %-9s %-28s %s' % (
            s['key'], s['scenario'],
            '%d/%d (%.1fs)' % (s['web']['min_ready'], s['web']['replicas'], s['web']['min_lasted_s']),
            '%d/%d (%.1fs)' % (s['streaming']['min_ready'], s['streaming']['replicas'],
                               s['streaming']['min_lasted_s']),
            s['streaming_restarted'], s['deploy_s'],
            '/'.join('-' if roll[r] is None else str(roll[r]) for r in ('web', 'streaming', 'sidekiq')), outcome))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kubeconfig', help='a running cluster (default: start a local one)')
    parser.add_argument('--output', help='directory for zero_downtime.json')
    parser.add_argument('--workdir', help='scratch directory (default: a temporary one)')
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix='fediops-zd-'))
    cluster = None
    kubeconfig = args.kubeconfig or os.environ.get('FEDIOPS_KUBECONFIG')
    if not kubeconfig:
        cluster = benchlib.Cluster(workdir / 'cluster')
        kubeconfig = cluster.start()
    try:
        collections = benchlib.copy_collection(workdir / 'collections')
        report = measure(kubeconfig, workdir / 'run', collections)
    finally:
        if cluster is not None:
            cluster.stop()
    print(table(report))
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        (Path(args.output) / 'zero_downtime.json').write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
