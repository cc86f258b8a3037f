# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bounded work on any input: the whole plan (variables, rules, environment, manifests) on long and adversarial
values, each refused naming its variable or planned, in time linear in the input. The times are printed (run with
-s, or read the captured output of a failure); the bound asserted is loose on purpose (a shared CI machine), far
below what the quadratic code took: a 1.2 MB config_extra_env value kept ansible-playbook busy for 338 s.

Limits (_deploy/variables.py): Kubernetes' 1 MiB per Secret/ConfigMap (pkg/apis/core/validation MaxSecretSize),
Linux's 128 KiB per environment string (MAX_ARG_STRLEN)."""

from __future__ import annotations

import os
import random
import re
import time

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import errors, plan, rules, variables
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils import plan_inputs

ROOT, SPECS, NOW = plan_inputs.ROOT, plan_inputs.SPECS, plan_inputs.NOW
BASE = dict(plan_inputs.BASE, config_kubernetes=False)
BOUND_S = 10.0  # loose: the measured times are printed
MB = 1200 * 1000
UNDER = 120 * 1000  # below the environment-string bound

ADVERSARIAL = {
    'letters': lambda n: 'a' * n,
    'scheme-like runs': lambda n: 'a:/' * (n // 3),
    'schemes without letters': lambda n: '-://' * (n // 4),
    'at signs after a scheme': lambda n: 'redis://' + '@' * n,
    'spaces': lambda n: ' ' * n + 'x',
    'PEM begin lines': lambda n: '-----BEGIN A-----' * (n // 17),
    'random printable': lambda n: ''.join(random.Random(n).choice('ab:/@?#-. 0') for dummy in range(n)),
}


def timed_plan(**overrides):
    started = time.perf_counter()
    try:
        plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW).plan()
        outcome = None
    except errors.PlanError as exc:
        outcome = exc
    return time.perf_counter() - started, outcome


def test_a_1_2_mb_env_value_is_refused_at_once_naming_the_variable():
    seconds, refusal = timed_plan(config_extra_env={'HUGE': 'a' * MB})
    print('\n1.2 MB config_extra_env value: refused in %.3f s' % seconds)
    assert refusal is not None and refusal.variables == ['config_extra_env']
    assert 'larger than Kubernetes accepts in one object' in refusal.message()
    assert 'aaaa' not in refusal.message()
    assert seconds < BOUND_S


@pytest.mark.parametrize('variable', ['config_env', 'config_extra_env', 'web_extra_env', 'sidekiq_extra_env',
                                      'streaming_extra_env', 'migrations_extra_env'])
def test_an_environment_string_linux_would_not_exec_is_refused(variable):
    seconds, refusal = timed_plan(**{variable: {'LONG_VALUE': 'b' * (140 * 1000)}})
    print('\n140 KB %s value: refused in %.3f s' % (variable, seconds))
    assert refusal is not None and variable in refusal.variables
    assert 'LONG_VALUE: KEY=value holds' in refusal.message() and 'MAX_ARG_STRLEN' in refusal.message()


def test_values_adding_up_past_one_object_are_refused_naming_the_variable():
    """config_extra_env of exactly 1 MiB (every value under the process bound) plus the computed settings: the env
    ConfigMap would exceed what Kubernetes accepts."""
    values = dict(('EXTRA_%d' % i, 'c' * 130000) for i in range(8))
    used = sum(len(k) + len(v) for k, v in values.items())
    values['EXTRA_FILL'] = 'c' * (variables.MAX_OBJECT_BYTES - used - len('EXTRA_FILL'))  # the variable: 1 MiB exactly
    seconds, refusal = timed_plan(config_extra_env=values)
    print('\n1 MiB of config_extra_env plus the computed settings: refused in %.3f s' % seconds)
    assert refusal is not None and refusal.variables == ['config_extra_env'], refusal and refusal.message()
    assert 'would hold' in refusal.message() and 'at most 1048576' in refusal.message()


@pytest.mark.parametrize('shape', sorted(ADVERSARIAL))
def test_adversarial_values_are_planned_or_refused_in_bounded_time(shape):
    """Every shape at 120 KB (allowed) and at 1.2 MB (refused), in config_extra_env (every value passes the URL
    scans: is_secret, url_userinfo), config_ca_pem (the PEM scan) and config_local_domain (the host rules)."""
    lines = []
    for size in (UNDER, MB):
        value = ADVERSARIAL[shape](size)
        for variable, raw in (('config_extra_env', {'ADVERSARIAL': value}), ('config_ca_pem', value),
                              ('config_local_domain', value)):
            seconds, refusal = timed_plan(**{variable: raw})
            verdict = 'planned' if refusal is None else 'refused (%s)' % ', '.join(refusal.variables)
            lines.append('%-24s %8d bytes %-20s %7.3f s  %s' % (shape, len(value), variable, seconds, verdict))
            assert seconds < BOUND_S, lines[-1]
            if refusal is not None:
                assert refusal.variables == [variable], (lines[-1], refusal.message())
            if size == MB:
                assert refusal is not None, lines[-1]
    print('\n' + '\n'.join(lines))


def test_the_url_scan_is_linear():
    """_url_rest on 0.3, 1.2 MB of letters: the old expression took 0.64 s at 32 KB and 11.6 s at 128 KB."""
    times = []
    for size in (300 * 1000, MB):
        started = time.perf_counter()
        assert mconfig.url_userinfo('a' * size) is None
        assert mconfig.is_secret('X_URL', 'a' * size + '://u:p@h') is True
        times.append(time.perf_counter() - started)
    print('\nurl scans: 300 KB %.4f s, 1.2 MB %.4f s' % tuple(times))
    assert times[1] < 1.0


def test_the_pem_scan_is_linear():
    started = time.perf_counter()
    blocks, outside = rules.pem_blocks('-----BEGIN A-----' * 70000)
    seconds = time.perf_counter() - started
    print('\nPEM scan of 1.2 MB of BEGIN lines: %.4f s' % seconds)
    assert blocks == [] and outside and seconds < 1.0


def test_no_regular_expression_in_plugins_is_super_linear():
    """Every regular expression literal of plugins/ on 50 KB and 200 KB adversarial strings (best of three runs):
    flagged when 200 KB take more than a second and more than 6 times the 50 KB (a quadratic expression takes 16
    times; the URL expression this replaced took 94 s at 64 KB, a linear one takes milliseconds)."""
    literal = re.compile(r"re\.(?:compile|search|match|fullmatch|findall|sub|split|finditer)\(\s*r?'((?:[^'\\]|\\.)*)'")
    found = []
    for folder, dummy, files in os.walk(os.path.join(ROOT, 'plugins')):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(folder, name), encoding='utf-8') as handle:
                    found += [(name, m.group(1)) for m in literal.finditer(handle.read())]
    assert len(found) > 20
    slow = []
    texts = dict((shape, [make(size) for size in (50000, 200000)]) for shape, make in ADVERSARIAL.items())
    for name, pattern in found:
        try:
            regex = re.compile(pattern.encode('latin-1', 'backslashreplace').decode('unicode_escape')
                               if '\\x' in pattern or '\\u' in pattern else pattern, re.S)
        except re.error:
            continue
        for shape, pair in texts.items():
            times = []
            for text in pair:
                started = time.perf_counter()
                regex.search(text)
                regex.findall(text)
                times.append(time.perf_counter() - started)
            if times[1] > 1.0 and times[1] > 6 * times[0]:
                slow.append('%s %r on %s: %.4f s -> %.4f s' % (name, pattern, shape, times[0], times[1]))
    assert slow == []
