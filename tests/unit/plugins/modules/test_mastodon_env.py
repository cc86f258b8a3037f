# -*- coding: utf-8 -*-
from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.fediops.mastodon.plugins.modules import mastodon_env


def _run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            mastodon_env.main()
    return json.loads(capsys.readouterr().out)


def test_writes_then_idempotent(tmp_path, capsys):
    dest = str(tmp_path / '.env.production')
    args = {'env': {'LOCAL_DOMAIN': 'example.social', 'DB_PASS': 'pw-unit-1'}, 'dest': dest, '_ansible_diff': True}
    first = _run(args, capsys)
    assert first['changed'] and oct(os.stat(dest).st_mode & 0o777) == '0o600'
    assert 'pw-unit-1' not in json.dumps(first['diff']) and 'DB_PASS=********' in first['diff']['after']
    assert first['secret_env']['DB_PASS'] == 'pw-unit-1'
    assert first['invocation']['module_args']['env']['DB_PASS'] != 'pw-unit-1'
    second = _run(args, capsys)
    assert second['changed'] is False and second['secrets'] == first['secrets'] and second['generated'] == []


def test_check_mode_writes_nothing(tmp_path, capsys):
    dest = tmp_path / '.env.production'
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social'}, 'dest': str(dest), '_ansible_check_mode': True}, capsys)
    assert out['changed'] and not dest.exists()


def test_existing_secrets_are_returned_unmasked(capsys):
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social'}, 'existing_secrets': {'SECRET_KEY_BASE': 'cluster-kept'}},
               capsys)
    assert out['secrets']['SECRET_KEY_BASE'] == 'cluster-kept'
    assert out['invocation']['module_args']['existing_secrets'] != {'SECRET_KEY_BASE': 'cluster-kept'}


def test_error_names_key_without_value(capsys):
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social', 'DB_PASS': 'bad\nsecret-xyz'}}, capsys)
    assert out['failed'] and 'DB_PASS' in out['msg'] and 'secret-xyz' not in json.dumps(out)
