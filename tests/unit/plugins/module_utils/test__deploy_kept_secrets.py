# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kept secrets change only on purpose, once (_deploy/guards.py kept_plan), and the database's keys are the
instance's identity (the pre-deployment Job's signal, _migrations' docstring).

Mastodon: SECRET_KEY_BASE signs the sessions (a new one logs every user out), the VAPID pair the web-push
subscriptions, and the ActiveRecord encryption keys encrypt columns (4.7: every local account's signing key,
app/models/keypair.rb:25; "Do not change the secrets once they are set", config/initializers/
active_record_encryption.rb:25).
"""

from __future__ import annotations


import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import errors, guards, plan
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils.plan_inputs import BASE, NOW, SPECS

KEPT = dict((k, 'old-' + k) for k in guards.KEPT_KEYS)


def _v(**overrides):
    return plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW).check_inputs()


def _state(annotations=None, kept=None):
    return {'instance': ['Secret mastodon-env'], 'kept_exists': True, 'kept': dict(kept or KEPT),
            'kept_annotations': dict(annotations or {})}


def _refusal(v, state):
    with pytest.raises(errors.PlanError) as info:
        guards.kept_plan(v, state, now=NOW)
    return info.value


def test_true_rotates_the_session_and_push_secrets_not_the_encryption_keys():
    out = guards.kept_plan(_v(config_rotate_kept_secrets=True), _state(), now=NOW)
    assert out['rotated'] == sorted(guards.ROTATABLE)
    assert set(out['known']) == set(guards.ENCRYPTION_KEYS)
    assert out['backup'] == KEPT and out['backup_name'] == 'mastodon-generated-secrets-previous-1'
    assert out['annotations'][guards.GENERATION] == '2' and out['annotations'][guards.ROTATION_REQUEST]
    assert out['encryption_keys_replaced'] is False


def test_a_list_rotates_only_what_it_names_and_vapid_as_a_pair():
    out = guards.kept_plan(_v(config_rotate_kept_secrets=['SECRET_KEY_BASE']), _state(), now=NOW)
    assert out['rotated'] == ['SECRET_KEY_BASE'] and 'SECRET_KEY_BASE' not in out['known']
    out = guards.kept_plan(_v(config_rotate_kept_secrets=['VAPID_PUBLIC_KEY']), _state(), now=NOW)
    assert out['rotated'] == ['VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY']


def test_an_encryption_key_in_the_list_is_refused_naming_the_data_and_the_option():
    refusal = _refusal(_v(config_rotate_kept_secrets=['ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY', 'NOPE']), _state())
    assert refusal.variables == ['config_rotate_kept_secrets'] and len(refusal.errors) == 2
    text = refusal.message()
    assert 'config_rotate_encryption_keys_destroying_encrypted_data: true' in text
    assert 'signing key of every local account' in text and 'keypair.rb:25' in text
    assert 'NOPE is not a kept secret' in text


def test_the_encryption_keys_only_through_their_own_option():
    out = guards.kept_plan(_v(config_rotate_encryption_keys_destroying_encrypted_data=True), _state(), now=NOW)
    assert out['rotated'] == sorted(guards.ENCRYPTION_KEYS)
    assert out['encryption_keys_replaced'] is True and out['annotations'][guards.ENCRYPTION_REPLACED]
    assert any('signing key of every local account' in w for w in out['warnings'])
    assert set(out['known']) == set(guards.ROTATABLE)


def test_a_rotation_acts_once_and_again_only_after_a_run_without_it():
    v = _v(config_rotate_kept_secrets=['SECRET_KEY_BASE'])
    first = guards.kept_plan(v, _state(), now=NOW)
    rotated = dict(KEPT, SECRET_KEY_BASE='new')
    again = guards.kept_plan(v, _state(first['annotations'], rotated), now=NOW)
    assert again['rotated'] == [] and again['backup'] is None and again['known'] == rotated
    assert any('not repeated while the request stays' in w for w in again['warnings'])
    assert again['annotations'] == first['annotations']  # the record stays while the request does
    without = guards.kept_plan(_v(), _state(again['annotations'], rotated), now=NOW)
    assert guards.ROTATION_REQUEST not in without['annotations'] and without['annotations'][guards.GENERATION] == '2'
    third = guards.kept_plan(v, _state(without['annotations'], rotated), now=NOW)
    assert third['rotated'] == ['SECRET_KEY_BASE'] and third['backup'] == rotated
    assert third['backup_name'] == 'mastodon-generated-secrets-previous-2'  # every generation kept, never overwritten
    assert third['annotations'][guards.GENERATION] == '3'


def test_the_encryption_keys_replaced_mark_stays():
    first = guards.kept_plan(_v(config_rotate_encryption_keys_destroying_encrypted_data=True), _state(), now=NOW)
    later = guards.kept_plan(_v(), _state(first['annotations']), now=NOW)
    assert later['encryption_keys_replaced'] is True


def test_config_secrets_differing_from_the_kept_value_is_refused_unless_rotated():
    refusal = _refusal(_v(config_secrets={'SECRET_KEY_BASE': 'other', 'VAPID_PUBLIC_KEY': KEPT['VAPID_PUBLIC_KEY']}),
                       _state())
    assert refusal.variables == ['config_secrets']
    text = refusal.message()
    assert 'SECRET_KEY_BASE differs from the value kept' in text and 'config_rotate_kept_secrets: [SECRET_KEY_BASE]' in text
    assert 'other' not in text.replace('another', '') and KEPT['SECRET_KEY_BASE'] not in text
    refusal = _refusal(_v(config_secrets={'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY': 'x'}), _state())
    assert 'config_rotate_encryption_keys_destroying_encrypted_data: true' in refusal.message()
    out = guards.kept_plan(_v(config_secrets={'SECRET_KEY_BASE': 'other'}, config_rotate_kept_secrets=['SECRET_KEY_BASE']),
                           _state(), now=NOW)
    assert out['known']['SECRET_KEY_BASE'] == 'other' and out['backup'] == KEPT


def test_the_fresh_signal():
    identity = list(guards.IDENTITY_KEYS)
    assert guards.fresh_secrets(identity, {}, {}, []) is True            # first install / renamed instance
    assert guards.fresh_secrets([], {}, KEPT, []) is False               # kept secrets reused
    assert guards.fresh_secrets([], KEPT, {}, []) is True                # staged for the files hosts, not deployed
    assert guards.fresh_secrets(['VAPID_PRIVATE_KEY', 'VAPID_PUBLIC_KEY'], {}, {}, []) is False
    assert guards.fresh_secrets(['SECRET_KEY_BASE'], {}, {}, ['SECRET_KEY_BASE']) is False  # rotation on purpose


def test_a_rerun_renders_the_first_installs_job_as_it_was():
    """Only the record's word that this version's Job carried the signal: the first install's Job that loaded the
    schema (or still runs); never an entry without it, as the first deploy of an adopted database (its secrets
    given, its Job without the signal) has: a second Job with the signal would refuse that database."""
    version = 'v4.7.6'
    assert guards.first_install_job({'current': {'version': version, 'schema_loaded': True}}, version) is True
    running = {'version': version, 'migrations_running': 'pre', 'running_job': 'masto-migrate-pre-v4-7-6-new-keys'}
    assert guards.first_install_job({'current': running}, version) is True
    adopted = {'current': {'version': version, 'previous_version': None, 'schema_loaded': False}, 'history': []}
    assert guards.first_install_job(adopted, version) is False
    assert guards.first_install_job({'current': {'version': 'v4.7.5', 'schema_loaded': True}}, version) is False
    assert guards.first_install_job(None, version) is False


def test_a_plan_that_generates_the_keys_signals_the_pre_job():
    deploy = plan.Deploy(dict(BASE, config_kubernetes=False), SPECS, plan.COMPONENTS, now=NOW).plan()
    assert deploy.model['fresh_secrets'] is True
    (pre,) = deploy.manifests['migrate-pre']
    (post,) = deploy.manifests['migrate-post']
    env = dict((e['name'], e.get('value')) for e in pre['spec']['template']['spec']['containers'][0]['env'])
    assert env[_migrations.FRESH_SECRETS_VARIABLE] == 'true'
    assert pre['metadata']['name'].endswith('-new-keys')  # a Job's template is immutable: another name
    post_env = [e['name'] for e in post['spec']['template']['spec']['containers'][0]['env']]
    assert _migrations.FRESH_SECRETS_VARIABLE not in post_env
    kept = [o for o in deploy.manifests['config'] if o['metadata']['name'] == 'mastodon-generated-secrets'][0]
    assert kept['metadata']['annotations'][guards.GENERATION] == '1'


def test_kept_secrets_given_do_not_signal():
    given = mconfig.fill_secrets({})[0]  # values of the right shape (VAPID: a P-256 pair)
    given = dict((k, given[k]) for k in guards.KEPT_KEYS)
    deploy = plan.Deploy(dict(BASE, config_kubernetes=False, config_secrets=given), SPECS, plan.COMPONENTS, now=NOW).plan()
    assert deploy.model['fresh_secrets'] is False
    (pre,) = deploy.manifests['migrate-pre']
    assert not pre['metadata']['name'].endswith('-new-keys')
