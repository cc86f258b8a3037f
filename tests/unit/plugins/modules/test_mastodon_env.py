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


def _warnings(out):
    """The warning texts of a module result (ansible-core 2.19 returns them as WarningSummary objects)."""
    return [w['event']['msg'] if isinstance(w, dict) else w for w in out.get('warnings', [])]


def test_mastodon_version_is_checked_before_anything(tmp_path, capsys):
    dest = tmp_path / '.env.production'
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social'}, 'dest': str(dest), 'mastodon_version': 'v4.4.3'}, capsys)
    assert out['failed'] and 'mastodon_version' in out['msg'] and 'allow_unsupported_version' in out['msg']
    assert not dest.exists()
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social'}, 'mastodon_version': 'v4.4.3',
                'allow_unsupported_version': True}, capsys)
    assert not out.get('failed') and any('4.4' in w for w in _warnings(out))


def test_mastodon_version_selects_the_schema(capsys):
    args = {'env': {'LOCAL_DOMAIN': 'example.social', 'ENABLE_SIDEKIQ_UNIQUE_JOBS_UI': True}}
    out = _run(dict(args, mastodon_version='v4.5.15'), capsys)
    assert not out.get('failed')
    out = _run(args, capsys)
    assert out['failed'] and out['keys'] == ['ENABLE_SIDEKIQ_UNIQUE_JOBS_UI'] and 'Mastodon 4.7' in out['msg']
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social'}, 'mastodon_version': 'v4.5.2'}, capsys)
    assert any('v4.5.20' in w for w in _warnings(out))


def test_credentials_in_any_url_go_to_the_secret(capsys):
    out = _run({'env': {'LOCAL_DOMAIN': 'example.social', 'ES_ENABLED': True,
                        'ES_HOST': 'https://elastic:pw%23unit@es.example'}}, capsys)
    assert 'ES_HOST' in out['secret_env'] and 'ES_HOST' not in out['config_env']
