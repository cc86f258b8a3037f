# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan's graceful-shutdown rules (a grace period too short for what runs inside it is refused naming both
variables, before any write) and the streaming pod template, which must change only when something the streaming
server reads changes: streaming/index.js:1427-1443 drops every WebSocket on SIGTERM."""

from __future__ import annotations


import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import applier, errors, plan
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import GENERATED
from ansible_collections.fediops.mastodon.tests.unit.plugins.module_utils import plan_inputs

SPECS, NOW = plan_inputs.SPECS, plan_inputs.NOW
BASE = dict(plan_inputs.BASE, config_kubernetes=False)


def refusal(**overrides):
    """The plan's refusal; without a cluster (config_kubernetes: false) the plan writes nothing anywhere."""
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW)
    with pytest.raises(errors.PlanError) as info:
        deploy.plan()
    return info.value


def test_the_defaults_pass():
    plan.Deploy(dict(BASE), SPECS, plan.COMPONENTS, now=NOW).plan()


def test_sidekiq_grace_below_its_timeout_is_refused_naming_both_variables():
    error = refusal(sidekiq_shutdown_timeout_seconds=60, sidekiq_termination_grace_period_seconds=45)
    (problem,) = error.errors
    assert problem.key == 'sidekiq_termination_grace_period_seconds'
    text = str(problem)
    assert 'sidekiq_shutdown_timeout_seconds (60)' in text and 'sidekiq_quiet_seconds (5)' in text
    assert '= 70' in text


def test_sidekiq_grace_must_cover_the_quiet_wait_too():
    (problem,) = refusal(sidekiq_quiet_seconds=30, sidekiq_termination_grace_period_seconds=55).errors
    assert problem.key == 'sidekiq_termination_grace_period_seconds'
    assert 'sidekiq_quiet_seconds (30)' in str(problem)
    plan.Deploy(dict(BASE, sidekiq_quiet_seconds=30, sidekiq_termination_grace_period_seconds=60), SPECS,
                plan.COMPONENTS, now=NOW).plan()


@pytest.mark.parametrize('role', ['web', 'streaming'])
def test_http_grace_below_the_prestop_delay_is_refused(role):
    (problem,) = refusal(**{role + '_prestop_delay_seconds': 20, role + '_termination_grace_period_seconds': 10}).errors
    assert problem.key == role + '_termination_grace_period_seconds'
    assert role + '_prestop_delay_seconds (20)' in str(problem)


@pytest.mark.parametrize('name, value', [('web_prestop_delay_seconds', -1), ('streaming_prestop_delay_seconds', 301),
                                         ('sidekiq_shutdown_timeout_seconds', 0),
                                         ('web_progress_deadline_seconds', 5)])
def test_bounds(name, value):
    (problem,) = refusal(**{name: value}).errors
    assert problem.key == name and 'between' in str(problem)


# ------------------------------------------------------------------ streaming restarts only when it must
def _planned(kept=None, **overrides):
    deploy = plan.Deploy(dict(BASE, **overrides), SPECS, plan.COMPONENTS, now=NOW,
                         staged={'kept': kept} if kept else None).plan()
    return deploy


@pytest.fixture(scope='module')
def kept():
    env = plan.Deploy(dict(BASE), SPECS, plan.COMPONENTS, now=NOW).plan().env
    return dict((k, env[k]) for k in GENERATED if env.get(k))


def templates(deploy):
    out = {}
    for component in ('web', 'streaming', 'sidekiq'):
        for obj in deploy.manifests[component]:
            if obj['kind'] == 'Deployment':
                out[obj['metadata']['name']] = obj['spec']['template']
    return out


SMTP = {'SMTP_SERVER': 'smtp.example', 'SMTP_PORT': '587', 'SMTP_LOGIN': 'postmaster',
        'SMTP_FROM_ADDRESS': 'notifications@social.example'}


@pytest.mark.parametrize('change', [
    {'config_env': SMTP},
    {'web_replicas': 5},
    {'web_concurrency': 4},
    {'web_max_threads': 6},
    {'web_prestop_delay_seconds': 10},
    {'sidekiq_workers': [{'name': 'all', 'queues': ['default', 'push', 'ingress', 'mailers', 'pull', 'scheduler',
                                                    'fasp'], 'concurrency': 10}]},
    {'sidekiq_shutdown_timeout_seconds': 20},
], ids=['smtp', 'web_replicas', 'web_concurrency', 'web_threads', 'web_prestop', 'sidekiq_workers', 'sidekiq_timeout'])
def test_a_change_streaming_does_not_read_leaves_its_pod_template_alone(kept, change):
    before, after = templates(_planned(kept)), templates(_planned(kept, **change))
    assert after['mastodon-streaming'] == before['mastodon-streaming']
    # ...and the change is real: some other pod template moved (or, for web_replicas, the Deployment itself).
    if 'web_replicas' not in change:
        assert after != before


@pytest.mark.parametrize('change', [
    {'config_mastodon_version': 'v4.6.4'},
    {'streaming_extra_env': {'LOG_LEVEL': 'debug'}},
    {'streaming_prestop_delay_seconds': 10},
    # streaming/database.js:105 sizes its PostgreSQL pool from DB_POOL: a shared key streaming reads.
    {'config_env': {'DB_POOL': '10'}},
], ids=['version', 'streaming_env', 'streaming_prestop', 'db_pool'])
def test_a_change_streaming_reads_changes_its_pod_template(kept, change):
    before, after = templates(_planned(kept)), templates(_planned(kept, **change))
    assert after['mastodon-streaming'] != before['mastodon-streaming']


# ------------------------------------------------------------------ the summary says when streaming restarts
def test_summary_says_when_streaming_restarts():
    text = applier.summary_text([('web', {'configured': ['Deployment/m-web']}), ('streaming', {'configured': [
        'Deployment/m-streaming']}), ('sidekiq', {'unchanged': ['Deployment/m-sidekiq-all']})],
        {'web': ['Deployment/m-web'], 'streaming': ['Deployment/m-streaming'], 'sidekiq': []})
    assert 'streaming: restarts (drops every WebSocket connection): Deployment/m-streaming' in text
    assert 'sidekiq: no restart' in text
    assert 'web: restarts (rolling' in text


def test_restarts_compare_the_live_pod_template_with_the_dry_run():
    one = applier.ComponentApplier.__new__(applier.ComponentApplier)
    live = {'metadata': {'name': 's'}, 'spec': {'replicas': 2, 'template': {'metadata': {'labels': {'a': '1'}}}}}
    scaled = {'metadata': {'name': 's'}, 'spec': {'replicas': 3, 'template': {'metadata': {'labels': {'a': '1'}}}}}
    changed = {'metadata': {'name': 's'}, 'spec': {'replicas': 2, 'template': {'metadata': {'labels': {'a': '2'}}}}}
    one.live = {('apps', 'Deployment', 'ns', 's'): live}

    def entry(obj, action='configured', name='s'):
        return {'kind': 'Deployment', 'apiVersion': 'apps/v1', 'namespace': 'ns', 'name': name, 'action': action,
                'object': obj}

    one.plan_result = {'objects': [entry(scaled)]}
    assert one.restarts() == []
    one.plan_result = {'objects': [entry(changed)]}
    assert one.restarts() == ['Deployment/s']
    one.plan_result = {'objects': [entry(changed, 'created', name='new')]}
    assert one.restarts() == []
