# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade-path guard (plugins/module_utils/_deploy/guards_upgrade.py): every door, each way through it.

Facts (tests/data is not needed: the numbers are Mastodon's, cited in the module): zero-downtime floors
2023_09_07_150100 (4.5/4.6, lib/tasks/db.rake:69 at v4.6.5) and 2024_10_07_071624 (4.7, db.rake:68-72);
accounts created under 4.7 sign only from the keypairs table (app/models/account.rb:536,559-564 at 4.7);
4.7.1 fixes 4.7 migrations that did not re-run after an interruption (its release notes)."""

from __future__ import annotations

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards_upgrade import (
    check_upgrade_path, next_line, parse_release, upgrade_check, upgrade_guard, version_lines)

FLOOR_4_6 = '20230907150100'
FLOOR_4_7 = '20241007071624'
SCHEMA_4_6 = '20260601000000'


def entry(version, phase='post', post='done', lines=None, schema=SCHEMA_4_6, outcome='ok'):
    line = '.'.join(version.lstrip('v').split('.')[:2])
    return {'version': version, 'images': {}, 'phase': phase, 'post_migrations': post,
            'lines_run': [line] if lines is None and phase in ('rollout', 'post') else (lines or []),
            'schema_version': schema, 'outcome': outcome}


def record(*entries):
    return {'current': entries[0], 'history': list(entries[1:])}


def refusals(target, rec, downtime=False):
    return [str(e) for e in upgrade_guard(target, rec, downtime)]


def test_version_data():
    lines = [line for line, dummy in version_lines()]
    assert lines == sorted(lines) and (4, 5) in lines and (4, 7) in lines
    assert dict(version_lines())[(4, 7)] == FLOOR_4_7 and dict(version_lines())[(4, 6)] == FLOOR_4_6
    assert next_line((4, 5)) == (4, 6) and next_line((4, 7)) is None
    assert parse_release('v4.7.6@sha256:' + 'a' * 64) == (4, 7, 6, None)
    assert parse_release('v4.7.0-rc.1') == (4, 7, 0, 'rc.1') and parse_release('latest') is None


def test_no_record_refuses_nothing_but_4_7_0():
    assert refusals('v4.6.9', None) == [] and refusals('v4.7.6', None) == []
    assert upgrade_check('v4.6.9', {'current': None, 'history': []}) == ([], [])


@pytest.mark.parametrize('target', ['v4.7.0', 'v4.7.0-rc.1', 'v4.7.1-beta.1'])
def test_4_7_migrations_need_4_7_1(target):
    [error] = upgrade_guard(target, None)
    assert error.key == 'config_mastodon_version'
    assert 'do not re-run cleanly before v4.7.1' in error.reason and 'deploy v4.7.1 or later' in error.reason
    assert 'there is no override' in error.reason


def test_4_7_1_and_later_pass():
    rec = record(entry('v4.6.9'))
    assert refusals('v4.7.1', rec) == [] and refusals('v4.7.6', rec) == []


def test_normal_upgrades_pass():
    assert refusals('v4.6.9', record(entry('v4.5.20'))) == []
    assert refusals('v4.6.9', record(entry('v4.6.5'))) == []  # a patch
    assert refusals('v4.7.6', record(entry('v4.6.9'), entry('v4.5.20'))) == []


def test_rollback_before_the_post_migrations_passes():
    """Pre-deployment migrations add only: the previous minor still works until the post-deployment ones ran."""
    for phase, post in (('pre', 'pending'), ('rollout', 'pending'), ('rollout', 'held')):
        rec = record(entry('v4.6.9', phase=phase, post=post), entry('v4.5.20'))
        assert refusals('v4.5.20', rec) == [], (phase, post)


@pytest.mark.parametrize('post', ['done', 'running'])
def test_downgrade_after_the_post_migrations_is_refused(post):
    rec = record(entry('v4.6.9', post=post), entry('v4.5.20'))
    [error] = upgrade_guard('v4.5.20', rec)
    assert error.key == 'config_mastodon_version'
    assert 'post-deployment migrations of 4.6 (v4.6.9) have run' in error.reason
    assert 'there is no override' in error.reason and 'restore of a database backup' in error.reason
    assert '<config_name>-deploy-record' in error.reason  # what to delete after such a restore


def test_a_newer_minor_in_the_history_still_counts():
    """4.6 fully deployed, then back to... no: 4.6 done, then a 4.6 patch current: 4.5 is refused from history."""
    rec = record(entry('v4.6.10', phase='pre', post='pending'), entry('v4.6.9'))
    assert any('post-deployment migrations of 4.6 (v4.6.9)' in r for r in refusals('v4.5.20', rec))


@pytest.mark.parametrize('phase,post', [('rollout', 'pending'), ('post', 'held'), ('post', 'done')])
def test_below_4_7_after_a_4_7_pod_is_refused(phase, post):
    rec = record(entry('v4.7.6', phase=phase, post=post), entry('v4.6.9'))
    errors = upgrade_guard('v4.6.9', rec)
    keys = [e for e in errors if 'keypairs' in e.reason]
    assert len(keys) == 1 and keys[0].key == 'config_mastodon_version'
    assert 'app/models/account.rb:536,559-564' in keys[0].reason and '4.6 cannot read' in keys[0].reason
    assert 'there is no override' in keys[0].reason


def test_below_4_7_when_only_4_7_pre_migrations_ran_passes():
    """The 4.7 pre-deployment Job ran but no 4.7 pod: nothing was created under 4.7; going back is a rollback."""
    rec = record(entry('v4.7.6', phase='pre', post='pending', lines=[]), entry('v4.6.9'))
    assert refusals('v4.6.9', rec) == []


def test_lines_run_marked_before_the_rollout_counts():
    """lines_run is written before the first new pod starts (RecordKeeper.before('web')): a deploy that failed
    during the rollout (phase still pre) has had 4.7 pods."""
    rec = record(entry('v4.7.6', phase='pre', post='pending', lines=['4.7'], outcome='failed'), entry('v4.6.9'))
    assert any('keypairs' in r for r in refusals('v4.6.9', rec))


def test_skipping_a_minor_is_refused_unless_with_downtime():
    rec = record(entry('v4.5.20'))
    [error] = upgrade_guard('v4.7.6', rec)
    assert error.key == 'config_mastodon_version'
    assert '4.7 would skip 4.6' in error.reason and 'deploy the newest 4.6 release first' in error.reason
    assert 'config_upgrade_with_downtime: true' in error.reason and 'web, streaming and Sidekiq stopped' in error.reason
    errors, warnings = upgrade_check('v4.7.6', rec, downtime=True)
    assert errors == [] and any('skips from 4.5 to 4.7' in w for w in warnings)


def test_skip_counts_from_the_newest_line_that_ran():
    """A 4.6 pre-deployment Job that ran without any 4.6 pod does not count as 4.6 deployed."""
    rec = record(entry('v4.6.9', phase='pre', post='pending', lines=[]), entry('v4.5.20'))
    assert any('would skip 4.6' in r for r in refusals('v4.7.6', rec))


def test_a_new_major_must_pass_through_4_7():
    rec = record(entry('v4.6.9'))
    assert any('5.0 would skip 4.7' in r for r in refusals('v5.0.0', rec))
    assert refusals('v5.0.0', record(entry('v4.7.6'))) == []


def test_schema_below_the_floor_is_refused_unless_with_downtime():
    rec = record(entry('v4.6.9', schema='20240101000000'))  # a 4.2-era schema, below 4.7's floor
    errors = upgrade_guard('v4.7.6', rec)
    floor = [e for e in errors if 'zero-downtime floor' in e.reason]
    assert len(floor) == 1 and floor[0].key == 'config_mastodon_version'
    assert '(20240101000000)' in floor[0].reason and FLOOR_4_7 in floor[0].reason
    assert 'config_upgrade_with_downtime: true' in floor[0].reason
    assert upgrade_guard('v4.7.6', rec, downtime=True) == []
    assert refusals('v4.7.6', record(entry('v4.6.9', schema=FLOOR_4_7))) == []  # at the floor: fine


def test_unknown_schema_skips_the_floor_check():
    assert refusals('v4.7.6', record(entry('v4.6.9', schema=None))) == []


def test_the_newest_schema_of_any_entry_counts():
    rec = record(entry('v4.6.9', phase='pre', post='pending', schema=None), entry('v4.6.8', schema=SCHEMA_4_6))
    assert refusals('v4.7.6', rec) == []
    rec = record(entry('v4.6.9', schema='20230101000000'), entry('v4.6.8', schema='20220101000000'))
    assert any('(20230101000000)' in r for r in refusals('v4.7.6', rec))


def test_patch_downgrade_inside_a_line_is_a_warning():
    errors, warnings = upgrade_check('v4.7.3', record(entry('v4.7.6')))
    assert errors == []
    assert len(warnings) == 1 and 'v4.7.3 is older than v4.7.6' in warnings[0] and 'security fixes' in warnings[0]
    assert upgrade_check('v4.7.6', record(entry('v4.7.3'))) == ([], [])


def test_a_non_release_tag_is_not_checked_but_said_so():
    errors, warnings = upgrade_check('nightly-2026-12-01', record(entry('v4.7.6')))
    assert errors == [] and 'cannot be checked' in warnings[0]


def test_every_refusal_at_once():
    rec = record(entry('v4.7.6', schema='20200101000000'), entry('v4.6.9'))
    reasons = refusals('v4.5.20', rec)
    assert len(reasons) == 2  # past 4.7's post-deployment migrations, and below 4.7 after 4.7 pods
    assert all(r.startswith('config_mastodon_version: ') for r in reasons)


def test_the_plan_entry_point_lets_the_upgrade_with_downtime_through():
    v = {'config_mastodon_version': 'v4.7.6', 'config_upgrade_with_downtime': False, 'config_name': 'masto'}
    assert check_upgrade_path(v, record(entry('v4.7.3'))) == []
    with pytest.raises(PlanError) as info:
        check_upgrade_path(v, record(entry('v4.5.20')))
    assert info.value.variables == ['config_mastodon_version'] and 'masto-deploy-record' not in info.value.message()
    # the deploy carries the downtime out (_deploy/downtime.py): a skipped minor below the floor is a warning
    warnings = check_upgrade_path(dict(v, config_upgrade_with_downtime=True), record(entry('v4.5.20', schema='20230101000000')))
    assert any('skips from 4.5 to 4.7' in w for w in warnings), warnings
    # downtime is no way back: the downgrade doors stay shut
    with pytest.raises(PlanError):
        check_upgrade_path(dict(v, config_mastodon_version='v4.5.20', config_upgrade_with_downtime=True),
                           record(entry('v4.7.6')))
    with pytest.raises(PlanError) as info:
        check_upgrade_path(dict(v, config_mastodon_version='v4.5.20'), record(entry('v4.7.6')))
    assert 'delete the ConfigMap masto-deploy-record' in info.value.message()


def test_a_migration_of_another_version_still_running_is_refused_naming_the_version():
    """The dry-run of the migration component would prune the running Job of the previous version (its name
    carries the version): the plan refuses, naming config_mastodon_version and the version that runs."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.applier import running_job_errors
    from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import RunningJobError
    job = {'kind': 'Job', 'metadata': {'name': 'masto-migrate-pre-v4-7-5', 'namespace': 'ns',
                                       'labels': {'app.kubernetes.io/version': 'v4.7.5'}}}
    exc = RunningJobError([job], ['running for 25 min, now at migration 20260728145403 UpdateAccountSummariesToVersion3'])
    [error] = running_job_errors('migrate-pre', exc)
    assert error.key == 'config_mastodon_version'
    assert error.reason.startswith('a pre-deployment migration of v4.7.5 is still running (running for 25 min, now at '
                                   'migration 20260728145403 UpdateAccountSummariesToVersion3)')
    assert 're-run with config_mastodon_version: v4.7.5 re-attaches to it' in error.reason
