# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Deploy benchmark: playbooks/deploy.yml (ours) against kubernetes.core.k8s on the same rendered manifests.

  python benchmarks/run.py [--runs 5] [--scales 1,4,10] [--output benchmarks/results]
  make bench-quick   (3 alternated rounds of deploy.yml vs kubernetes.core one task per role, 18 objects; ~6 min)

Starts its own local cluster (tests/cluster, audit log on) and the DigitalOcean API stand-in, renders the whole
stack once per scale with the plan of mastodon_deploy (the objects of each component, after a warm-up deploy), then
runs, alternating, (a) deploy.yml, (b) kubernetes.core.k8s one task per role, (c) kubernetes.core.k8s one task per
object (loop): first deploy into a fresh namespace and an idempotent re-run. Counts the API requests of each run in
the API server's audit log and the tasks and module invocations in the json callback's output. Measures how soon a
failing migration Job is reported, and how the deploy grows with 1x, 4x, 10x the objects (extra sidekiq groups).
Writes results.json and results.png to the output directory and stops what it started.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402  pylint: disable=wrong-import-position
import chart  # noqa: E402  pylint: disable=wrong-import-position
from benchlib import log  # noqa: E402  pylint: disable=wrong-import-position

VARIANTS = (
    ('ours', '(a) fediops.mastodon deploy.yml'),
    ('ours_apply', '(a2) fediops.mastodon.k8s_apply alone, one task per role'),
    ('core_per_role', '(b) kubernetes.core.k8s, one task per role'),
    ('core_loop', '(c) kubernetes.core.k8s, loop per object'),
)
FAILURE_TOOLS = (
    ('ours', 'fediops.mastodon.k8s_apply wait: true'),
    ('core_wait', 'kubernetes.core.k8s wait: true'),
    ('core_condition', 'kubernetes.core.k8s wait: true, wait_condition Complete'),
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=5, help='rounds of (a), (b), (c), each a first deploy and a re-run')
    parser.add_argument('--variants', default=','.join(name for name, _label in VARIANTS),
                        help='variants of the side-by-side comparison (comma separated)')
    parser.add_argument('--failure-tools', default=','.join(name for name, _label in FAILURE_TOOLS),
                        help='tools of the failure latency test (comma separated)')
    parser.add_argument('--core-wait-sleep', type=int,
                        help="kubernetes.core.k8s wait_sleep (seconds between its checks; default: the module's, 5)")
    parser.add_argument('--scales', default='1,4,10', help='object multipliers of the scale series (comma separated)')
    parser.add_argument('--scale-runs', type=int, default=1, help='runs per scale factor')
    parser.add_argument('--scale-variants', default='ours,core_per_role', help='variants of the scale series')
    parser.add_argument('--scale-core-max', type=int, default=4,
                        help='largest factor at which the kubernetes.core variants of the scale series run')
    parser.add_argument('--failure-runs', type=int, default=3, help='runs of each tool in the failure latency test')
    parser.add_argument('--failure-delay', type=float, default=3.0, help='seconds the failing Job pod runs')
    parser.add_argument('--failure-timeout', type=int, default=60, help='wait_timeout of the failure latency test')
    parser.add_argument('--output', default=str(benchlib.REPO / 'benchmarks' / 'results'), help='results directory')
    parser.add_argument('--workdir', help='scratch directory (default: a new temporary one)')
    parser.add_argument('--kubeconfig', help='use this running cluster (its audit log via --audit-log) instead')
    parser.add_argument('--audit-log', help='audit log of the cluster given with --kubeconfig')
    parser.add_argument('--no-chart', action='store_true', help='skip the PNG chart')
    parser.add_argument('--merge-failure', help='with --update: take the failure section from this results.json')
    parser.add_argument('--update', action='store_true',
                        help='start from the results.json in --output and replace only the parts measured now')
    return parser.parse_args(argv)


class Bench(object):
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = Path(workdir)
        self.results = dict(meta={}, variants={}, ratios={}, requests_per_object={}, failure={}, scale=[],
                            targets={})
        self.cluster = None
        self.standin = None
        self.ansible = None
        self.kube = None
        self.renders = {}
        self.deploy_playbook = None

    # --- set-up -------------------------------------------------------------------------------------------------
    def setup(self):
        collections = benchlib.copy_collection(self.workdir / 'collections')
        self.deploy_playbook = collections / 'ansible_collections' / 'fediops' / 'mastodon' / 'playbooks' / 'deploy.yml'
        if self.args.kubeconfig:
            self.cluster = benchlib.Cluster(self.workdir / 'cluster', kubeconfig=self.args.kubeconfig)
            if self.args.audit_log:
                self.cluster.audit_log = Path(self.args.audit_log)
        else:
            self.cluster = benchlib.Cluster(self.workdir / 'cluster')
            log('starting the local cluster in %s' % self.cluster.state_dir)
            self.cluster.start()
        self.standin = benchlib.Standin(self.workdir / 'do-standin')
        log('DigitalOcean API stand-in at %s' % self.standin.start())
        self.ansible = benchlib.Ansible(self.workdir, collections, self.cluster.kubeconfig)
        (self.workdir / 'ansible-tmp').mkdir(exist_ok=True)
        self.kube = benchlib.Kube(self.cluster.kubeconfig)

    def teardown(self):
        if self.standin:
            self.standin.stop()
        if self.cluster:
            self.cluster.stop()

    def ours_vars(self, namespace, factor):
        extra = self.renders[1]['objects'] * (factor - 1) if factor > 1 else 0
        values = benchlib.deploy_vars(namespace, extra_sidekiq_groups=extra)
        values.update(self.standin.config_vars())
        return values

    def render(self, factor):
        """Runs deploy.yml once (a warm-up too) and renders the same objects with the plan (per component)."""
        namespace = 'bench-render-x%d' % factor
        values = self.ours_vars(namespace, factor)
        run = self.ansible.run(self.deploy_playbook, values)
        if run['rc'] != 0:
            raise RuntimeError('rendering deploy.yml run failed: %s' % run['stderr'][-3000:])
        sets = benchlib.planned_sets(self.workdir / 'collections', values)
        self.kube.delete_namespace(namespace)
        objects = benchlib.object_count(sets)
        log('x%d: %d objects in %d components' % (factor, objects, len(sets)))
        return dict(sets=sets, objects=objects)

    def manifest_file(self, factor, namespace):
        path = self.workdir / ('manifests-%s.json' % namespace)
        path.write_text(json.dumps(benchlib.retarget(self.renders[factor]['sets'], namespace)), encoding='utf-8')
        os.chmod(path, 0o600)
        return path

    # --- one deploy ---------------------------------------------------------------------------------------------
    def run_variant(self, variant, namespace, factor):
        """First deploy into a fresh namespace, then the re-run; returns both measurements."""
        if variant == 'ours':
            playbook, extra = self.deploy_playbook, self.ours_vars(namespace, factor)
        else:
            manifests = self.manifest_file(factor, namespace)
            playbook = self.workdir / ('%s-%s.yml' % (variant, namespace))
            benchlib.core_playbook(playbook, manifests, per_object=(variant == 'core_loop'),
                                   ours=(variant == 'ours_apply'), wait_sleep=self.args.core_wait_sleep)
            extra = None
        out = {}
        for phase in ('first', 'rerun'):
            offset = self.cluster.audit_offset()
            run = self.ansible.run(playbook, extra)
            requests = benchlib.count_requests(self.cluster.audit_events(offset))
            counts = benchlib.task_counts(run['output'])
            stats = (run['output'] or {}).get('stats', {}).get('localhost', {})
            out[phase] = dict(seconds=run['seconds'], rc=run['rc'], requests=requests, changed=stats.get('changed'),
                              **counts)
            log('  %-14s x%-2d %-5s %6.1fs rc=%d requests=%d writes=%d (dry-runs %d) tasks=%d modules=%d changed=%s' % (
                variant, factor, phase, run['seconds'], run['rc'], requests['total'], requests['writes'],
                requests['dry_runs'], counts['tasks'], counts['modules'], stats.get('changed')))
            if run['rc'] != 0:
                log('  failed: %s' % run['stderr'][-1500:])
        self.kube.delete_namespace(namespace)
        return out

    # --- (a)/(b)/(c) side by side -------------------------------------------------------------------------------
    def compare(self):
        chosen = self.args.variants.split(',')
        variants = [(name, label) for name, label in VARIANTS if name in chosen]
        raw = {name: [] for name, _label in variants}
        names = [name for name, _label in variants]
        for round_no in range(self.args.runs):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            log('round %d/%d: %s' % (round_no + 1, self.args.runs, ' '.join(order)))
            for variant in order:
                raw[variant].append(self.run_variant(variant, 'bench-%s-%d' % (variant.replace('_', '-'), round_no), 1))
        objects = self.renders[1]['objects']
        for name, label in variants:
            entry = dict(label=label, objects=objects)
            for phase in ('first', 'rerun'):
                runs = raw[name]
                entry[phase] = dict(
                    seconds=benchlib.summary([r[phase]['seconds'] for r in runs]),
                    requests=benchlib.summary([r[phase]['requests']['total'] for r in runs]),
                    writes=benchlib.summary([r[phase]['requests']['writes'] for r in runs]),
                    tasks=benchlib.summary([r[phase]['tasks'] for r in runs]),
                    modules=benchlib.summary([r[phase]['modules'] for r in runs]),
                    changed=[r[phase]['changed'] for r in runs],
                    failed_runs=sum(1 for r in runs if r[phase]['rc'] != 0),
                    by_verb=runs[-1][phase]['requests']['by_verb'] if runs else {})
                self.results['requests_per_object'].setdefault(name, {})[phase] = dict(
                    total=round(entry[phase]['requests']['median'] / objects, 2),
                    writes=round(entry[phase]['writes']['median'] / objects, 2))
            self.results['variants'][name] = entry
        pairs = (('core_per_role', 'ours'), ('core_loop', 'ours'), ('core_loop', 'core_per_role'),
                 ('core_per_role', 'ours_apply'), ('core_loop', 'ours_apply'), ('ours', 'ours_apply'))
        for phase in ('first', 'rerun'):
            med = {name: self.results['variants'][name][phase]['seconds']['median'] for name in names}
            self.results['ratios'][phase] = dict(('%s/%s' % (a, b), round(med[a] / med[b], 2))
                                                 for a, b in pairs if a in med and b in med)

    # --- failure latency ----------------------------------------------------------------------------------------
    def failure(self):
        job = None
        for _name, defs in self.renders[1]['sets']:
            for obj in defs:
                if obj.get('kind') == 'Job':
                    job = json.loads(json.dumps(obj))
                    break
            if job:
                break
        job['metadata']['name'] = 'mastodon-migrate-failing'
        # Alone in its namespace: without the deploy's ServiceAccount, which the Job controller would wait for.
        job['spec']['template']['spec'].pop('serviceAccountName', None)
        annotations = job['spec']['template']['metadata'].setdefault('annotations', {})
        annotations.update({'sim.fediops.test/fail': 'true',
                            'sim.fediops.test/delay-seconds': str(self.args.failure_delay)})
        tools = [(name, label) for name, label in FAILURE_TOOLS if name in self.args.failure_tools.split(',')]
        self.results['failure'] = {}
        raw = {name: [] for name, _label in tools}
        for run_no in range(self.args.failure_runs):
            for tool, _label in tools:
                namespace = 'bench-fail-%s-%d' % (tool.replace('_', '-'), run_no)
                manifest = self.workdir / ('fail-%s.json' % namespace)
                doc = json.loads(json.dumps(job))
                doc['metadata']['namespace'] = namespace
                # Only the Job: a wait_condition would apply to a Namespace in the list too (and never be met).
                self.kube.create_namespace(namespace)
                manifest.write_text(json.dumps([doc]), encoding='utf-8')
                playbook = benchlib.failure_playbook(self.workdir / ('fail-%s.yml' % tool), manifest, tool,
                                                     wait_timeout=self.args.failure_timeout)
                watcher = benchlib.PodFailureWatch(self.cluster.kubeconfig, namespace)
                watcher.start()
                run = self.ansible.run(playbook, dict(bench_namespace=namespace))
                time.sleep(1)
                watcher.stop()
                watcher.join(10)
                task_end = task_failed = None
                for task, result in benchlib.iter_host_results(run['output']):
                    task_end = benchlib.parse_iso(task['task']['duration']['end'])
                    task_failed = bool(result.get('failed'))
                record = dict(task_failed=task_failed, pod_failed_at=watcher.failed_at, task_end=task_end,
                              playbook_end=run['ended'], playbook_seconds=run['seconds'])
                if watcher.failed_at and task_end:
                    record['latency'] = task_end - watcher.failed_at
                log('  failure %-14s task_failed=%s latency=%s playbook=%.1fs' % (
                    tool, task_failed, '%.2fs' % record['latency'] if 'latency' in record else '-', run['seconds']))
                raw[tool].append(record)
                self.kube.delete_namespace(namespace)
        for tool, label in tools:
            runs = raw[tool]
            reported = [r for r in runs if r['task_failed']]
            self.results['failure'][tool] = dict(
                label=label, runs=len(runs), reported_failed=len(reported),
                latency=benchlib.summary([r['latency'] for r in reported if 'latency' in r]),
                task_seconds_after_pod_failure=benchlib.summary([r.get('latency') for r in runs]),
                playbook_seconds=benchlib.summary([r['playbook_seconds'] for r in runs]))
        self.results['failure']['setup'] = dict(pod_runs_seconds=self.args.failure_delay,
                                                wait_timeout=self.args.failure_timeout)

    # --- scale --------------------------------------------------------------------------------------------------
    def scale(self, factors):
        all_variants = [v for v in self.args.scale_variants.split(',') if v]
        for factor in factors:
            variants = [v for v in all_variants if not v.startswith('core') or factor <= self.args.scale_core_max]
            raw = {v: [] for v in variants}
            for run_no in range(self.args.scale_runs):
                order = variants if run_no % 2 == 0 else list(reversed(variants))
                for variant in order:
                    namespace = 'bench-scale-%s-x%d-%d' % (variant.replace('_', '-'), factor, run_no)
                    raw[variant].append(self.run_variant(variant, namespace, factor))
            point = dict(factor=factor, objects=self.renders[factor]['objects'])
            for variant in variants:
                point[variant] = {phase: dict(
                    seconds=benchlib.summary([r[phase]['seconds'] for r in raw[variant]]),
                    requests=benchlib.summary([r[phase]['requests']['total'] for r in raw[variant]]),
                    writes=benchlib.summary([r[phase]['requests']['writes'] for r in raw[variant]]),
                    tasks=benchlib.summary([r[phase]['tasks'] for r in raw[variant]]),
                    failed_runs=sum(1 for r in raw[variant] if r[phase]['rc'] != 0))
                    for phase in ('first', 'rerun')}
            self.results['scale'].append(point)

    # --- targets ------------------------------------------------------------------------------------------------
    def targets(self):
        t = self.results['targets']
        ratios = self.results.get('ratios', {}).get('rerun') or {}
        if 'core_per_role/ours' in ratios:
            t['rerun_vs_core_per_role'] = dict(target='>= 3x', measured=ratios['core_per_role/ours'],
                                               met=ratios['core_per_role/ours'] >= 3)
        if 'core_loop/ours' in ratios:
            t['rerun_vs_core_loop'] = dict(target='>= 8x', measured=ratios['core_loop/ours'],
                                           met=ratios['core_loop/ours'] >= 8)
        rpo = self.results['requests_per_object'].get('ours')
        if rpo:
            worst = max(rpo['first']['writes'], rpo['rerun']['writes'])
            t['writes_per_object'] = dict(target='<= 1', measured=dict(first=rpo['first']['writes'],
                                                                       rerun=rpo['rerun']['writes']), met=worst <= 1)
        fail = self.results['failure'].get('ours')
        if fail:
            latency = fail['latency']
            t['failure_latency'] = dict(target='<= 5 s', measured=latency['max'] if latency else None,
                                        met=bool(latency) and fail['reported_failed'] == fail['runs']
                                        and latency['max'] <= 5)
        points = {p['factor']: p for p in self.results['scale'] if 'ours' in p}
        if 1 in points and max(points) > 1:
            top = max(points)
            for phase in ('first', 'rerun'):
                growth = points[top]['ours'][phase]['seconds']['median'] / points[1]['ours'][phase]['seconds']['median']
                t['scale_%s' % phase] = dict(target='x%d objects <= x%d time' % (top, top), measured=round(growth, 2),
                                             met=growth <= top)

    def meta(self, started):
        import ansible  # pylint: disable=import-outside-toplevel
        from ansible.release import __version__ as core_version  # pylint: disable=import-outside-toplevel
        manifest = Path(ansible.__file__).resolve().parent.parent / 'ansible_collections' / 'kubernetes' / 'core'
        try:
            core_coll = json.loads((manifest / 'MANIFEST.json').read_text())['collection_info']['version']
        except (OSError, ValueError, KeyError):
            core_coll = None
        self.results['meta'] = dict(
            started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started)), seconds=round(time.time() - started, 1),
            python=platform.python_version(), ansible_core=core_version, kubernetes_core=core_coll,
            cpus=os.cpu_count(), loadavg_end=list(os.getloadavg()), runs=self.args.runs,
            scale_runs=self.args.scale_runs, objects=self.renders.get(1, {}).get('objects'),
            requests_counted='audit log events (stage ResponseComplete) of every client but the control plane, '
                             'kubesim and the harness; writes = create, update, patch, delete, deletecollection',
            modules_counted='tasks executed (loop items one by one, skipped ones left out) whose action is not '
                            'run in the controller (assert, set_fact, include_*, validate_argument_spec, ...)')


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM (and SIGINT, ignored in background jobs otherwise) end the run through the clean-up below
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    factors = sorted({int(f) for f in args.scales.split(',') if f.strip()}) if args.scales else []
    started = time.time()
    workdir = args.workdir or tempfile.mkdtemp(prefix='fediops-bench-')
    Path(workdir).mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    bench = Bench(args, workdir)
    output = Path(args.output)
    if args.update:
        bench.results = json.loads((output / 'results.json').read_text(encoding='utf-8'))
        bench.results['targets'] = {}
        if factors:
            bench.results['scale'] = []
        if args.merge_failure:
            bench.results['failure'] = json.loads(Path(args.merge_failure).read_text(encoding='utf-8'))['failure']
            bench.results['meta']['failure_from'] = 'a separate run (--merge-failure)'
    measure = args.runs > 0 or args.failure_runs > 0 or bool(factors)
    try:
        if measure:
            bench.setup()
        for factor in sorted(set([1] + factors)) if measure else []:
            bench.renders[factor] = bench.render(factor)
        if args.runs > 0:
            bench.compare()
        if args.failure_runs > 0:
            bench.failure()
        if factors:
            bench.scale(factors)
        bench.targets()
        if not args.update:
            bench.meta(started)
    finally:
        bench.teardown()
    output.mkdir(parents=True, exist_ok=True)
    (output / 'results.json').write_text(json.dumps(bench.results, indent=2, sort_keys=False) + '\n', encoding='utf-8')
    log('wrote %s' % (output / 'results.json'))
    if not args.no_chart:
        chart.draw(bench.results, output / 'results.png')
        log('wrote %s' % (output / 'results.png'))
    print(json.dumps(bench.results['targets'], indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
