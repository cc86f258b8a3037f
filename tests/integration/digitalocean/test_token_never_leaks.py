# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The API token must never show up in any output, whatever the verbosity and whatever fails.

The -vvv scan runs every scenario in ONE ansible-playbook -vvv --diff (module-scoped fixture): each
scenario is a host of its own in the inventory (run locally, in parallel) with a stand-in of its own
that has the scenario's faults. Each scenario's test checks the lines of the output about its host;
test_token_absent_from_whole_vvv_output checks the whole output.
"""
from __future__ import annotations

import re

import pytest

TASKS = '''
- name: ca
  fediops.mastodon.do_database_ca:
    cluster_name: mastodon-pg
    dest: "{{ dest }}"
    api_token: "{{ token }}"
  ignore_errors: true
- name: info
  fediops.mastodon.do_database_info:
    tag: mastodon
    api_token: "{{ token }}"
  ignore_errors: true
'''

SCENARIOS = {
    'success': [],
    'unauthorized': [{'kind': 'status', 'status': 401}],
    'server-error': [{'kind': 'status', 'status': 500}],
    'rate-limited': [{'kind': 'rate_limit', 'retry_after': 300}],
    'malformed': [{'kind': 'malformed_json'}],
    'disconnect': [{'kind': 'disconnect'}],
}


def host_lines(output, host):
    """The lines of human-readable (-vvv) output about one host: those naming it (`<host>`, `[host]`)
    and the multi-line result that follows `[host]... => {`."""
    lines = []
    inside = False
    for line in output.splitlines():
        if inside:
            lines.append(line)
            inside = line != '}'
        elif '<%s>' % host in line or '[%s]' % host in line:
            lines.append(line)
            inside = line.endswith('=> {')
    return '\n'.join(lines)


@pytest.fixture(scope='module')
def vvv_run(do_batch):
    """Every scenario (its own stand-in, with its faults) in one ansible-playbook -vvv --diff run."""
    apis = {}
    cases = {}
    for scenario in sorted(SCENARIOS):
        apis[scenario] = do_batch.spawn(*SCENARIOS[scenario])
        dest = do_batch.directory('vvv-' + scenario) / 'ca.pem'
        cases[scenario] = do_batch.case(apis[scenario], {'dest': str(dest)}, defaults={'max_retries': 1})
    result = do_batch.run(TASKS.replace('"{{ dest }}"', '"{{ case.params.dest }}"'), cases, token_in_env=False,
                          callback='default', verbosity=3, diff=True, extra_vars={'token': do_batch.token})
    return apis, result


@pytest.mark.parametrize('scenario', sorted(SCENARIOS))
def test_token_absent_from_vvv_output(do_standin_session, vvv_run, scenario):
    apis, result = vvv_run
    token = do_standin_session.token
    output = result.stdout + result.stderr
    assert 'fediops.mastodon.do_database_ca' in output or 'TASK [ca]' in output
    assert len(apis[scenario].requests) >= 2, apis[scenario].requests  # the modules did talk to the stand-in
    # the scenario's own lines, and stderr (test_token_absent_from_whole_vvv_output checks the whole output)
    own = host_lines(result.stdout, scenario)
    assert len(re.findall(r'^(?:ok|changed|fatal|failed): \[%s\]' % re.escape(scenario), own, flags=re.M)) >= 2, own[-3000:]
    assert token not in own + result.stderr
    assert token[8:] not in own + result.stderr  # not even the random part
    if scenario == 'success':
        assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in own or '********' in own or 'api_token' not in own


def test_token_absent_from_whole_vvv_output(do_standin_session, vvv_run):
    apis, result = vvv_run
    output = result.stdout + result.stderr
    assert all(len(api.requests) >= 2 for api in apis.values())
    leaked = [line for line in output.splitlines() if do_standin_session.token[8:] in line]
    assert not leaked, leaked[:5]
    assert do_standin_session.token not in output
    assert do_standin_session.token[8:] not in output


def test_token_from_env_absent_from_json_output(do_api, do_playbook, dest_dir):
    result = do_playbook(TASKS.replace('    api_token: "{{ token }}"\n', ''),
                         extra_vars={'dest': str(dest_dir / 'ca.pem'), 'token': 'unused'})
    assert result.returncode == 0, result.stdout
    assert result.result('ca')['changed'] is True
    assert do_api.token not in result.stdout + result.stderr
