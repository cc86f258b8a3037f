# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke run of the deploy benchmark (benchmarks/run.py): one run each, no scale series, its own local cluster.

Checks that the harness renders the stack with deploy.yml, runs our module and kubernetes.core side by side,
counts API requests from the audit log and tasks from the json callback, measures a failing Job, and writes
a results JSON with sane numbers. The full benchmark is `make bench`, not part of `make test`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RUN = os.path.join(ROOT, 'benchmarks', 'run.py')

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, 'playbooks', 'deploy.yml')),
                                reason='playbooks/deploy.yml is not there')


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench-out')
    work = tmp_path_factory.mktemp('bench-work')
    env = dict(os.environ)
    env.pop('FEDIOPS_KUBECONFIG', None)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, RUN, '--runs', '1', '--variants', 'ours_apply,core_per_role', '--scales', '',
         '--failure-runs', '1', '--failure-tools', 'ours', '--failure-delay', '2', '--no-chart', '--core-wait-sleep', '1',
         '--output', str(out), '--workdir', str(work)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600, check=False)
    elapsed = time.time() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(os.path.join(str(out), 'results.json'), encoding='utf-8') as handle:
        data = json.load(handle)
    data['_elapsed'] = elapsed
    data['_stderr'] = proc.stderr
    return data


def test_fields(smoke):
    for key in ('meta', 'variants', 'ratios', 'requests_per_object', 'failure', 'scale', 'targets'):
        assert key in smoke
    assert set(smoke['variants']) == {'ours_apply', 'core_per_role'}
    assert smoke['meta']['objects'] >= 10
    assert smoke['meta']['kubernetes_core']
    for name, entry in smoke['variants'].items():
        for phase in ('first', 'rerun'):
            for key in ('seconds', 'requests', 'writes', 'tasks', 'modules'):
                assert entry[phase][key]['n'] == 1, (name, phase, key)
            assert entry[phase]['failed_runs'] == 0, (name, phase, smoke['_stderr'][-3000:])


def test_numbers_are_sane(smoke):
    objects = smoke['meta']['objects']
    for name, entry in smoke['variants'].items():
        for phase in ('first', 'rerun'):
            stat = entry[phase]
            assert 0 < stat['seconds']['median'] < 300, (name, phase)
            # every object is applied once at least (one server-side apply patch each), never a hundred times
            assert objects <= stat['writes']['median'] <= 3 * objects, (name, phase, stat['writes'])
            assert stat['writes']['median'] <= stat['requests']['median'], (name, phase)
            assert stat['modules']['median'] >= 1 and stat['tasks']['median'] >= stat['modules']['median']
        # the first deploy creates everything; the re-run changes nothing
        assert entry['first']['changed'] == [entry['first']['tasks']['median']] or entry['first']['changed'][0] > 0
        assert entry['rerun']['changed'] == [0], (name, entry['rerun'])
    assert smoke['variants']['ours_apply']['first']['modules']['median'] == 6
    assert 'core_per_role/ours_apply' in smoke['ratios']['rerun']
    assert smoke['requests_per_object']['ours_apply']['rerun']['writes'] >= 1


def test_failure_reported(smoke):
    fail = smoke['failure']['ours']
    assert fail['runs'] == 1
    assert fail['reported_failed'] == 1
    assert 0 <= fail['latency']['median'] < 30
