# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rollback's decisions and record (plugins/module_utils/_deploy/rollback.py): allowed while the newer version's
post-deployment migrations have not run and no 4.7 pod ran before a return below 4.7 (accounts created under 4.7
sign only from the keypairs table: app/models/account.rb:536,559-564 at 4.7); the upgrade guard agrees with every
rollback allowed here; a rollback entry is re-targeted by a re-run."""

from __future__ import annotations

import datetime
import json
import os

import pytest
import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import record as _record
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import variables
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards_upgrade import upgrade_check
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.rollback import (
    ROLLED_BACK, plan_rollback, rollback_target, rolled_back_record, streaming_digest)
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

NOW = datetime.datetime(2026, 12, 5, 18, 0, tzinfo=datetime.timezone.utc)
LATER = datetime.datetime(2026, 12, 5, 18, 5, tzinfo=datetime.timezone.utc)
DIGEST = 'sha256:' + 'ab' * 32


def deployed(*steps):
    """A record made by the record's own functions: each step (version, post) a deploy up to the rollout, then
    post done or not."""
    rec = None
    for version, post in steps:
        rec = _record.start_entry(rec, version, {'web': 'ghcr.io/mastodon/mastodon:' + version,
                                                 'streaming': 'ghcr.io/mastodon/mastodon-streaming@' + DIGEST}, NOW)
        rec = _record.set_phase(rec, 'pre', NOW, schema_version='20260601000000')
        rec = _record.mark_line_run(rec, NOW)
        rec = _record.set_phase(rec, 'rollout', NOW, post_migrations=post)
        if post == 'done':
            rec = _record.set_phase(rec, 'post', NOW)
        rec = _record.set_phase(rec, 'config', NOW, outcome='ok')
    return rec


def reasons(errors):
    return ' '.join(str(e) for e in errors)


@pytest.mark.parametrize('post', ['pending', 'held'])
def test_a_patch_upgrade_whose_post_migrations_have_not_run_rolls_back(post):
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', post))
    target, errors, already = rollback_target(rec)
    assert (target, errors, already) == ('v4.6.5', [], False)
    # the upgrade guard (the plan of the rollback runs it) allows the same downgrade
    assert upgrade_check('v4.6.5', rec)[0] == []


def test_a_minor_upgrade_whose_post_migrations_have_not_run_rolls_back():
    rec = deployed(('v4.5.3', 'done'), ('v4.6.9', 'held'))
    assert rollback_target(rec)[:2] == ('v4.5.3', [])
    assert upgrade_check('v4.5.3', rec)[0] == []


@pytest.mark.parametrize('post', ['done', 'running'])
def test_after_the_post_migrations_only_a_restore_goes_back(post):
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', 'held'))
    rec = _record.set_phase(rec, 'post', NOW, post_migrations=post)
    target, errors, dummy = rollback_target(rec, 'mastodon-deploy-record')
    text = reasons(errors)
    assert errors and errors[0].key == 'config_mastodon_version'
    assert 'post-deployment migrations' in text and 'Before the point of no return: backups' in text
    assert 'new database cluster from the backup' in text and 'mastodon-deploy-record' in text
    # the guard only warns about a patch downgrade after the post-deployment migrations: the rollback refuses
    assert upgrade_check('v4.6.5', rec)[0] == [] and upgrade_check('v4.6.5', rec)[1]


def test_back_below_4_7_once_a_4_7_pod_ran_is_refused_naming_the_keys():
    rec = deployed(('v4.6.9', 'done'), ('v4.7.6', 'held'))
    target, errors, dummy = rollback_target(rec)
    assert target == 'v4.6.9'
    text = reasons(errors)
    assert 'keypairs' in text and 'app/models/account.rb:536,559-564' in text and 'restore' in text


def test_4_7_upgrade_stopped_before_any_pod_rolls_back():
    rec = _record.start_entry(deployed(('v4.6.9', 'done')), 'v4.7.6', {}, NOW)
    rec = _record.set_phase(rec, 'pre', NOW)
    assert rollback_target(rec)[:2] == ('v4.6.9', [])


def test_nothing_to_roll_back_to():
    assert 'no deploy record' in reasons(rollback_target(None)[1])
    assert 'nothing to roll back to' in reasons(rollback_target(deployed(('v4.6.9', 'held')))[1])


def test_a_running_migration_refuses():
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', 'held'))
    rec = _record.set_phase(rec, 'rollout', NOW, migrations_running='pre')
    assert 'still running' in reasons(rollback_target(rec)[1])


def test_the_record_keeps_the_abandoned_entry_and_a_re_run_targets_the_rollback():
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', 'held'))
    images = {'web': 'ghcr.io/mastodon/mastodon:v4.6.5', 'streaming': 'ghcr.io/mastodon/mastodon-streaming@' + DIGEST}
    out = rolled_back_record(rec, 'v4.6.5', images, LATER)
    current = out['current']
    assert current['version'] == 'v4.6.5' and current['outcome'] == ROLLED_BACK
    assert current['rolled_back_from'] == 'v4.6.9' and current['previous_version'] == 'v4.6.9'
    assert current['post_migrations'] == 'done' and current['lines_run'] == ['4.6']
    assert out['history'][0]['version'] == 'v4.6.9' and out['history'][0]['post_migrations'] == 'held'
    assert [e['version'] for e in out['history']] == ['v4.6.9', 'v4.6.5']
    # what the ConfigMap holds keeps the rollback's fields
    assert 'rolled_back_from' in _record.render_record('ns', 'mastodon', {}, out)['data'][_record.KEY]
    # a re-run targets the version serving now, not the abandoned one
    assert rollback_target(out) == ('v4.6.5', [], True)
    again = rolled_back_record(out, 'v4.6.5', images, LATER, 'failed')
    assert again['history'] == out['history'] and again['current']['outcome'] == 'failed'
    # the next deploy of the newer version starts a new entry from the rolled-back one
    forward = _record.start_entry(out, 'v4.6.9', {}, LATER)
    assert forward['current']['previous_version'] == 'v4.6.5' and 'rolled_back_from' not in forward['current']


def test_the_streaming_digest_of_the_previous_version():
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', 'held'))
    assert streaming_digest(rec, 'v4.6.5') == DIGEST
    assert streaming_digest(rec, 'v4.5.1') == ''


class FakeKube(object):
    """The API server as the rollback's plan reads it: the record's ConfigMap only."""

    def __init__(self, rec):
        self.rec = rec

    @staticmethod
    def path(api_version, kind, namespace=None, name=None, subresource=None):
        return '/api/%s/namespaces/%s/%ss/%s' % (api_version, namespace, kind.lower(), name)

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):
        assert method == 'GET', 'the rollback wrote before its plan passed: %s %s' % (method, path)
        if self.rec is None:
            return 404, {}
        return 200, {'data': {_record.KEY: json.dumps(self.rec)}}


class RefusingDeploy(object):
    """A plan whose environment check refuses a key for the older version."""

    def __init__(self, raw, components):
        self.raw, self.components = raw, components

    def plan(self):
        raise PlanError([ConfigError('config_env', 'FOO_NEW_IN_4_6_9: not read by v4.6.5')], 'the plan found problems')


def test_the_plan_of_the_rollback_is_the_previous_versions_and_its_refusal_refuses_the_rollback():
    specs = variables.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
    rec = deployed(('v4.6.5', 'done'), ('v4.6.9', 'held'))
    made = []

    def make_deploy(raw, components):
        made.append(RefusingDeploy(raw, components))
        return made[-1]
    raw = {'config_local_domain': 'social.example', 'config_mastodon_version': 'v4.6.9',
           'config_streaming_image_digest': 'sha256:' + 'cd' * 32}
    with pytest.raises(PlanError) as info:
        plan_rollback(raw, specs, make_deploy, lambda: FakeKube(rec))
    assert made[0].raw['config_mastodon_version'] == 'v4.6.5'
    assert made[0].raw['config_streaming_image_digest'] == DIGEST  # the recorded image of v4.6.5, not the new one
    assert made[0].components == ['config', 'web', 'streaming', 'sidekiq']
    assert info.value.variables == ['config_env'] and 'FOO_NEW_IN_4_6_9' in info.value.message()
    assert 'the rollback to v4.6.5 is refused' in info.value.message()
    # refused by the record: the plan is never made
    with pytest.raises(PlanError) as info:
        plan_rollback(raw, specs, make_deploy, lambda: FakeKube(None))
    assert len(made) == 1 and 'no deploy record' in info.value.message()
