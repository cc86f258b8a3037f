# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The API token must never show up in any output, whatever the verbosity and whatever fails."""
from __future__ import annotations

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


@pytest.mark.parametrize('scenario', sorted(SCENARIOS))
def test_token_absent_from_vvv_output(do_api, do_playbook, dest_dir, scenario):
    do_api.set_faults(*SCENARIOS[scenario])
    result = do_playbook(TASKS, token_in_env=False, callback='default', verbosity=3, diff=True,
                         extra_vars={'token': do_api.token, 'dest': str(dest_dir / 'ca.pem')},
                         defaults={'max_retries': 1})
    output = result.stdout + result.stderr
    assert 'fediops.mastodon.do_database_ca' in output or 'TASK [ca]' in output
    assert do_api.count() >= 2, do_api.requests  # the modules did talk to the stand-in
    assert do_api.token not in output
    assert do_api.token[8:] not in output  # not even the random part
    if scenario == 'success':
        assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in output or '********' in output or 'api_token' not in output


def test_token_from_env_absent_from_json_output(do_api, do_playbook, dest_dir):
    result = do_playbook(TASKS.replace('    api_token: "{{ token }}"\n', ''),
                         extra_vars={'dest': str(dest_dir / 'ca.pem'), 'token': 'unused'})
    assert result.returncode == 0, result.stdout
    assert result.result('ca')['changed'] is True
    assert do_api.token not in result.stdout + result.stderr
