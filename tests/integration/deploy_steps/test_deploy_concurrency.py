# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One deploy at a time per instance, through playbooks/deploy.yml against the local Kubernetes API server: the
Lease <config_name>-deploy (plugins/module_utils/_deploy/lock.py) taken by the plan, renewed by every step,
released by the finish task.

1. Two upgrades of one install at once: the first one's pre-deployment migration Job runs for a while (the pod
   simulator's sim.fediops.test/delay-seconds); the second, started while the first holds the Lease, is refused by
   its plan task naming config_name and the first one's holder; the first completes and releases the Lease.
   --check takes no lock: no Lease write in the API server's audit log.
2. A holder that died. A killed ansible-playbook leaves its Lease held with its holderIdentity until
   leaseDurationSeconds after its last renewal; the default duration (lock.DEFAULT_DURATION_S, 120 s) is too slow
   for this test, so the dead holder's Lease is written directly with a short leaseDurationSeconds and a foreign
   holderIdentity, which is exactly what such a kill leaves. A deploy started at once is refused naming that
   holder; one started after the duration takes the Lease over (leaseTransitions + 1) and proceeds.
3. Two first installs at once (new namespace): the plan cannot take the Lease (no namespace yet), so the config
   step creates the namespace bare and takes the Lease before it writes anything else; of two creators the API
   server answers 409 to one, which is refused with nothing of its own written. Exactly one set of kept secrets
   (Secret <name>-generated-secrets) is written, once. Before, the Lease was first taken by the step after config:
   both runs applied their own generated secrets (the audit log: two applies of the Secret, 201 then 200, the
   second replacing the first) and the loser was refused only then.
"""
from __future__ import annotations

import datetime
import json
import os
import secrets
import threading
import time

import pytest

from test_deploy_steps import INSTALLED, UPGRADE, Runner, failures, tasks_of
from test_rollback import Cluster

PLAN = 'Plan (every check; nothing is written)'
CONFIG = 'Config'
LEASE = 'mastodon-deploy'
KEPT = 'mastodon-generated-secrets'


def upgrade(runner):
    """The upgrade's variables, the same for every run of the module: its pre-deployment migration Job runs 25 s
    (the pod simulator's sim.fediops.test/delay-seconds). Another pod template would make the plan refuse the
    Job (its template is immutable) before it reaches the lock."""
    return runner.variables(UPGRADE, migrations_pod_annotations={'sim.fediops.test/delay-seconds': '25'})


class Background(threading.Thread):
    """One ansible-playbook run in a thread: .done, .data, .started, .ended (monotonic seconds)."""

    def __init__(self, runner, variables, args=()):
        super(Background, self).__init__(daemon=True)
        self.runner, self.variables, self.args = runner, variables, args
        self.done = self.data = self.started = self.ended = None

    def run(self):
        self.started = time.monotonic()
        self.done, self.data = self.runner.run(self.variables, self.args, callback='json')
        self.ended = time.monotonic()


def lease(cluster):
    done = cluster.kube.kubectl('-n', cluster.namespace, 'get', 'lease', LEASE, '-o', 'json', check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def holder(cluster):
    return ((lease(cluster) or {}).get('spec') or {}).get('holderIdentity')


def result_of(data, name):
    return dict(tasks_of(data)).get(name) or {} if data else {}


def failed_task(data):
    """(name, msg) of the failed task (json callback)."""
    found = [(name, result.get('msg')) for name, result in tasks_of(data or {'plays': []}) if result.get('failed')]
    return found[0] if found else (None, None)


def new_runner(kube, standin, tmp_path, namespace, label):
    return Runner(kube, standin, str(tmp_path / label), namespace)


@pytest.fixture(scope='module')
def installed(kube_cluster, do_standin_session, tmp_path_factory):
    do_standin_session.reset()
    namespace = 'lock-' + secrets.token_hex(3)
    runner = Runner(kube_cluster, do_standin_session, str(tmp_path_factory.mktemp('lock')), namespace)
    done, data = runner.run(runner.variables(INSTALLED), callback='json')
    assert done.returncode == 0, failures(done, data)
    yield runner, Cluster(kube_cluster, namespace)
    kube_cluster.kubectl('delete', 'namespace', namespace, '--wait=false', check=False)


def test_a_second_deploy_while_one_runs_is_refused_at_its_plan_naming_the_holder(installed, tmp_path):
    runner, cluster = installed
    # --check takes no lock: it reads the Lease and writes nothing at all
    offset = cluster.audit_offset()
    done, data = runner.run(upgrade(runner), ['--check'], callback='json')
    assert done.returncode == 0, failures(done, data)
    assert cluster.writes_since(offset) == [], 'a --check run wrote'

    first = Background(runner, upgrade(runner))
    first.start()
    deadline = time.monotonic() + 90
    first_holder = None
    while first_holder is None and time.monotonic() < deadline and first.is_alive():
        time.sleep(0.5)
        first_holder = holder(cluster)
    assert first_holder, 'the first deploy never took the Lease: %s' % (first.done and failures(first.done, first.data))
    held_at = time.monotonic() - first.started

    second = Background(new_runner(cluster.kube, runner.standin, tmp_path, cluster.namespace, 'second'),
                        upgrade(runner))
    second.start()
    second.join()
    first.join()
    name, msg = failed_task(second.data)
    print('\n[two deploys] first took the Lease %.1f s after its start, holder %r' % (held_at, first_holder))
    print('[two deploys] second: rc %s after %.1f s, refused by %r: %s'
          % (second.done.returncode, second.ended - second.started, name, msg))
    print('[two deploys] first: rc %s after %.1f s' % (first.done.returncode, first.ended - first.started))
    assert second.done.returncode != 0
    assert name == PLAN, (name, msg)
    assert 'config_name' in msg and 'another deploy of mastodon' in msg, msg
    assert 'held by %s since' % first_holder in msg, msg
    assert first.done.returncode == 0, failures(first.done, first.data)
    assert result_of(first.data, 'Pre-deployment migrations').get('changed'), 'the first one ran no migration'
    released = lease(cluster)['spec']
    assert not released.get('holderIdentity'), released  # finish released it
    images = cluster.images()
    assert all(any(':' + UPGRADE in i for i in imgs) for imgs in images.values()), images


def test_a_dead_holder_refuses_until_its_lease_expires_then_the_deploy_proceeds(installed):
    runner, cluster = installed
    duration = 20  # long enough for a loaded machine to reach the plan's lock before it expires
    dead = 'operator@deploy-host-gone pid 4242 #deadbeef'
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    before = lease(cluster)
    body = dict(before, spec=dict(before['spec'], holderIdentity=dead, leaseDurationSeconds=duration,
                                  acquireTime=now, renewTime=now))
    path = os.path.join(runner.workdir, 'dead-lease.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(body, handle)
    cluster.kube.kubectl('replace', '-f', path)
    written = time.monotonic()

    done, data = runner.run(upgrade(runner), callback='json')
    name, msg = failed_task(data)
    print('\n[dead holder] run started at once: rc %s, %.1f s after the Lease write, refused by %r: %s'
          % (done.returncode, time.monotonic() - written, name, msg))
    assert done.returncode != 0 and name == PLAN, failures(done, data)
    assert 'held by %s since %s' % (dead, now) in msg and 'config_name' in msg, msg
    assert lease(cluster)['spec']['holderIdentity'] == dead  # the refused run wrote nothing to it

    time.sleep(max(0.0, duration + 1 - (time.monotonic() - written)))
    started = time.monotonic() - written
    done, data = runner.run(upgrade(runner), callback='json')
    print('[dead holder] run started %.1f s after the Lease write (duration %d s): rc %s'
          % (started, duration, done.returncode))
    assert done.returncode == 0, failures(done, data)
    after = lease(cluster)['spec']
    print('[dead holder] Lease after: %s' % after)
    assert not after.get('holderIdentity') and after['leaseTransitions'] == before['spec']['leaseTransitions'] + 1


def test_two_first_installs_at_once_write_one_set_of_kept_secrets(kube_cluster, do_standin_session, tmp_path):
    do_standin_session.reset()
    namespace = 'lock-new-' + secrets.token_hex(3)
    cluster = Cluster(kube_cluster, namespace)
    try:
        offset = cluster.audit_offset()
        runs = [Background(new_runner(kube_cluster, do_standin_session, tmp_path, namespace, label), None)
                for label in ('a', 'b')]
        for run in runs:
            run.variables = run.runner.variables(UPGRADE)
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        writes = cluster.writes_since(offset)
        outcomes = [(run.done.returncode, failed_task(run.data)) for run in runs]
        for label, run, (rc, (name, msg)) in zip('ab', runs, outcomes):
            print('\n[first installs] run %s: rc %s after %.1f s; failed task %r: %s'
                  % (label, rc, run.ended - run.started, name, msg))
        kept_writes = [w for w in writes if w['resource'] == 'secrets' and w['name'] == KEPT]
        namespace_writes = [w for w in writes if w['resource'] == 'namespaces']
        print('[first installs] writes of %s: %s; of the namespace: %s' % (KEPT, kept_writes, namespace_writes))
        assert sorted(rc == 0 for rc, dummy in outcomes) == [False, True], outcomes
        winner, loser = (runs[0], runs[1]) if outcomes[0][0] == 0 else (runs[1], runs[0])
        name, msg = failed_task(loser.data)
        # refused at the plan (the winner created the namespace and took the Lease first) or at the config step
        # (both plans found no namespace; the winner's POST created it): never after writing anything
        assert name in (PLAN, CONFIG), (name, msg)
        assert 'config_name' in msg and ('another deploy of mastodon' in msg or 'created by another deploy' in msg)
        assert len(kept_writes) == 1 and kept_writes[0]['code'] in (200, 201), kept_writes
        assert [w['verb'] for w in namespace_writes].count('create') <= 2  # the bare POSTs; one answered 409
        assert [w['code'] for w in namespace_writes if w['verb'] == 'create'].count(201) == 1, namespace_writes
        kept = json.loads(kube_cluster.kubectl('-n', namespace, 'get', 'secret', KEPT, '-o', 'json').stdout)
        assert kept['data'], kept['metadata']
        assert winner.done.returncode == 0
    finally:
        kube_cluster.kubectl('delete', 'namespace', namespace, '--wait=false', check=False)
