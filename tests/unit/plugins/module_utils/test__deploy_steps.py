# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The steps of a deploy and the handoff file between the plan task and the steps (_deploy/steps.py,
docs/dev/ARCHITECTURE.md section 1); the progress of a wait (_k8s_apply.Applier(progress=...))."""

from __future__ import annotations

import copy
import datetime
import json
import os
import stat
import time

import pytest
import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils import _backups, _k8s_apply, _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import errors, lock, plan, steps, variables

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
SPECS = variables.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc)
RAW = {'config_local_domain': 'social.example', 'config_database_source': 'explicit', 'config_db_host': 'db.example',
       'config_db_password': 'pw-0123456789', 'config_redis_url': 'rediss://default:pw-redis-42@redis.example:25061',
       'config_media_ephemeral': True, 'config_tls_preflight': False, 'config_kubernetes': False}


@pytest.fixture
def planned(tmp_path):
    deploy = plan.Deploy(dict(RAW), SPECS, plan.COMPONENTS, now=NOW).plan()
    data = steps.PlanContext.data_of(deploy, steps.effective(RAW, SPECS), os.urandom(32))
    directory, path = steps.write_handoff(data, deploy.files())
    yield deploy, directory, path
    steps.remove_handoff(path)


def test_the_handoff_is_private_and_removed(planned):
    deploy, directory, path = planned
    assert os.path.basename(directory).startswith('fediops-plan-')
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name in os.listdir(directory):
        assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600, name
    assert sorted(os.listdir(directory)) == ['env.production', 'plan.json']
    assert steps.remove_handoff(path) and not os.path.exists(directory)


def test_a_step_loads_the_plan_made_from_the_same_variables(planned):
    deploy, dummy, path = planned
    ctx = steps.PlanContext.load(path, steps.effective(dict(RAW), SPECS))
    assert ctx.v['config_local_domain'] == 'social.example'
    assert [o['kind'] for o in ctx.manifests['web']] == [o['kind'] for o in deploy.manifests['web']]
    assert ctx.origins == deploy.manifests.origins  # the tuples survive JSON


def test_a_plan_made_from_other_variables_is_refused_without_values(planned):
    dummy, dummy2, path = planned
    other = dict(RAW, config_db_password='another-password-77')
    with pytest.raises(steps.HandoffError) as caught:
        steps.PlanContext.load(path, steps.effective(other, SPECS))
    assert 'made from other variables' in str(caught.value)
    assert 'another-password-77' not in str(caught.value) and 'pw-0123456789' not in str(caught.value)


def test_a_role_default_given_explicitly_is_the_same_plan(planned):
    """A role's step sees its role's defaults/main.yml; the plan task outside the role does not."""
    path = planned[2]
    steps.PlanContext.load(path, steps.effective(dict(RAW, web_replicas=SPECS['web']['web_replicas']['default']),
                                                 SPECS))


def test_the_fingerprint_reveals_nothing_without_the_key():
    key = os.urandom(32)
    assert steps.fingerprint(key, RAW) == steps.fingerprint(key, dict(reversed(list(RAW.items()))))
    assert steps.fingerprint(key, RAW) != steps.fingerprint(os.urandom(32), RAW)
    assert steps.fingerprint(key, RAW) != steps.fingerprint(key, dict(RAW, web_replicas=3))


def test_a_missing_handoff_says_re_run_the_plan(tmp_path):
    with pytest.raises(steps.HandoffError) as caught:
        steps.PlanContext.load(str(tmp_path / 'fediops-plan-x' / 'plan.json'), steps.effective(RAW, SPECS))
    assert 're-run the plan task' in str(caught.value)


def test_remove_handoff_touches_only_its_own_directories(tmp_path):
    keep = tmp_path / 'precious'
    keep.mkdir()
    (keep / 'plan.json').write_text('{}')
    assert not steps.remove_handoff(str(keep / 'plan.json')) and keep.exists()


def test_the_steps_are_the_playbooks_tasks():
    with open(os.path.join(ROOT, 'playbooks', 'deploy.yml'), encoding='utf-8') as handle:
        play = yaml.safe_load(handle)[0]
    block = play['tasks'][0]
    tasks = block['block'] + block['always']
    found = [(t['fediops.mastodon.mastodon_deploy']['step'], t['tags']) for t in tasks
             if 'fediops.mastodon.mastodon_deploy' in t]
    assert found == [('plan', ['always'])] + [(s, [steps.STEP_TAGS[s]]) for s in steps.STEP_ORDER]
    assert 'step' not in block and 'tags' not in block
    # ansible_failed_task exists in a rescue section only: the finish task reads the failure from the one result
    # every task of the block registers (the block stops at its first failed task)
    assert [t.get('register') for t in block['block']] == ['mastodon_deploy_step'] * len(block['block'])
    outcome = block['always'][0]['fediops.mastodon.mastodon_deploy']['outcome']
    assert 'mastodon_deploy_step' in outcome and 'ansible_failed_task' not in outcome


# ------------------------------------------------------------------ the gate and the held post-deployment migrations
class FakePods(object):
    """The API server as the gate and the record see it: pods by label, Jobs by name, the record ConfigMap."""

    def __init__(self, pods, jobs=None):
        self.pods = pods
        self.jobs = dict(jobs or {})
        self.queries = []
        self.record = None
        self.record_writes = []

    @staticmethod
    def path(api_version, kind, namespace=None, name=None, subresource=None):
        return '/api/v1/namespaces/%s/configmaps/%s' % (namespace, name)

    def request(self, method, path, query=None, body=None, **kwargs):
        if '/configmaps/' in path:
            if method == 'GET':
                return (404, None) if self.record is None else (200, self.record)
            assert method == 'PATCH' and body['metadata']['name'].endswith('-deploy-record')
            self.record = body
            self.record_writes.append(json.loads(body['data']['record.json'])['current'])
            return 200, body
        if '/jobs/' in path:
            name = path.rsplit('/', 1)[1]
            return (200, self.jobs[name]) if name in self.jobs else (404, None)
        if path.endswith('/log'):
            return 404, None
        self.queries.append(query['labelSelector'])
        wanted = dict(part.split('=') for part in query['labelSelector'].split(','))
        return 200, {'items': [p for p in self.pods if all(p['metadata']['labels'].get(k) == v for k, v in wanted.items())]}


def _pod(name, labels, image, container='web'):
    return {'metadata': {'name': name, 'labels': labels}, 'spec': {'containers': [{'name': container, 'image': image}]}}


def _ctx(planned, pods, jobs=None, **overrides):
    deploy, dummy, path = planned
    ctx = steps.PlanContext.load(path, steps.effective(RAW, SPECS), client=FakePods(pods, jobs))
    ctx.v = dict(ctx.v, config_kubernetes=True, **overrides)
    return ctx


def test_the_gate_finds_pods_of_the_old_version(planned):
    deploy = planned[0]
    web = [o for o in deploy.manifests['web'] if o['kind'] == 'Deployment'][0]
    labels = web['spec']['selector']['matchLabels']
    container = web['spec']['template']['spec']['containers'][0]
    new = _pod('web-new', labels, container['image'], container['name'])
    old = _pod('web-old', labels, 'ghcr.io/mastodon/mastodon:v4.5.9', container['name'])
    assert steps.old_pods(_ctx(planned, [new])) == []
    assert steps.old_pods(_ctx(planned, [new, old])) == ['web-old (ghcr.io/mastodon/mastodon:v4.5.9)']
    confirmed = _backups.utc_text(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
    problems = steps.gate_problems(_ctx(planned, [new, old], migrations_backup_confirmed_at=confirmed))
    assert [p.key for p in problems] == ['config_mastodon_version'] and 'web-old' in str(problems[0])
    # an explicit database without the operator's confirmation of a backup: refused, naming the variable
    problems = steps.gate_problems(_ctx(planned, [new]))
    assert [p.key for p in problems] == ['migrations_backup_confirmed_at'], problems
    with pytest.raises(errors.PlanError):
        steps.run_step('gate', _ctx(planned, [new, old], web_wait_timeout=0, streaming_wait_timeout=0,
                                    sidekiq_wait_timeout=0))


def test_held_post_migrations_do_nothing_and_say_how_to_run_them(planned):
    ctx = _ctx(planned, [], migrations_post='hold')
    for name in ('gate', 'migrate-post'):
        out = steps.run_step(name, ctx)
        assert out['changed'] is False and '--tags post-migrations -e migrations_post=run' in out['msg']
    assert ctx.client.queries == []  # no pod looked at
    # the one write: the record says held (mastodon_status then shows them pending)
    assert [(w['phase'], w['post_migrations']) for w in ctx.client.record_writes] == [('rollout', 'held')]


def test_migrations_post_is_a_documented_choice():
    spec = SPECS['migrations']['migrations_post']
    assert spec['choices'] == ['run', 'hold'] and spec['default'] == 'run'


# ------------------------------------------------------------------ progress of a wait
class ScriptedWatch(object):
    def __init__(self, events):
        self.events = events

    def path(self, api_version, kind, namespace=None, name=None, subresource=None):
        return '/apis/apps/v1/namespaces/%s/deployments' % namespace

    def watch(self, path, query=None, timeout=60):
        yield from self.events


def _dep(updated, ready, rv):
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'spec': {'replicas': 3},
            'metadata': {'name': 'mastodon-web', 'namespace': 'ns', 'resourceVersion': rv, 'generation': 2},
            'status': {'observedGeneration': 2, 'replicas': 3, 'updatedReplicas': updated, 'readyReplicas': ready,
                       'availableReplicas': ready}}


def test_progress_is_shown_once_per_change_of_state():
    events = [{'type': 'MODIFIED', 'object': _dep(u, r, str(i))}
              for i, (u, r) in enumerate([(1, 2), (1, 2), (2, 2), (2, 2), (3, 3)])]
    shown = []
    applier = _k8s_apply.Applier(ScriptedWatch(events), namespace='ns', wait=True, wait_timeout=30,
                                 progress=shown.append)
    declared = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'mastodon-web', 'namespace': 'ns'}}
    applier.wait_for([(declared, _dep(0, 3, '0'))])
    assert [s.rsplit(' (', 1)[0] for s in shown] == [
        'mastodon-web 0/3 updated, 3/3 ready', 'mastodon-web 1/3 updated, 2/3 ready', 'mastodon-web 2/3 updated, 2/3 ready',
        'mastodon-web 3/3 updated, 3/3 ready']  # the last line: the rollout is complete
    assert all(s.endswith(' s)') for s in shown)


def test_progress_text_of_a_starting_rollout_and_a_surge():
    starting = _dep(3, 3, '1')
    starting['metadata']['generation'] = 3
    assert _k8s_apply.progress_text(starting) == 'rollout starting'
    surging = _dep(2, 4, '2')
    assert _k8s_apply.progress_text(surging) == '2/3 updated, 3/3 ready (+1 surge)'


def test_elapsed_time_in_seconds_then_minutes():
    assert _k8s_apply.elapsed_text(45) == '45 s' and _k8s_apply.elapsed_text(725) == '12 min'


def test_the_handoff_keeps_the_pods_applyset_label(planned):
    """Applier.prepare labels the plan's objects in place and a pod template shares its workload's labels: the
    step's objects (through JSON) must carry the same label in their pod templates, or a Job of the same version
    would differ from the one the plan dry-ran (its template is immutable)."""
    deploy, dummy, path = planned
    ctx = steps.PlanContext.load(path, steps.effective(RAW, SPECS))
    job = [o for o in ctx.manifests['migrate-pre'] if o['kind'] == 'Job'][0]
    web = [o for o in ctx.manifests['web'] if o['kind'] == 'Deployment'][0]
    for component, obj in (('migrate-pre', job), ('web', web)):
        expected = _k8s_apply.applyset_id('mastodon-set-' + component, 'mastodon')
        assert obj['metadata']['labels'][_k8s_apply.APPLYSET_PART_OF] == expected
        assert obj['spec']['template']['metadata']['labels'][_k8s_apply.APPLYSET_PART_OF] == expected


def test_a_cluster_error_after_problems_leaves_the_problems_as_the_answer(monkeypatch):
    """web_exposure=httproute without parents: the default stands in for the parents, the HTTPRoute is still
    rendered, and a cluster without the Gateway API answers the dry-run with an error that names no variable."""
    state = {'namespace': {}, 'kept': {}, 'env_secret': {}, 'instance': [], 'env_configmap': None}
    monkeypatch.setattr(plan, 'read_state', lambda client, v: state)
    monkeypatch.setattr(plan, 'read_references', lambda client, v: {})

    def no_gateway_api(self):
        raise _k8s_apply.KubeError('the API server does not serve gateway.networking.k8s.io/v1', status=404)

    monkeypatch.setattr(plan.Deploy, 'dry_run', no_gateway_api)
    raw = dict(RAW, config_kubernetes=True, web_exposure='httproute')
    with pytest.raises(errors.PlanError) as caught:
        plan.Deploy(raw, SPECS, plan.COMPONENTS, kube_client=object, now=NOW).plan()
    assert [e.key for e in caught.value.errors] == ['web_gateway_parent_refs']
    with pytest.raises(_k8s_apply.KubeError):  # alone, the cluster's answer is the error
        plan.Deploy(dict(RAW, config_kubernetes=True), SPECS, plan.COMPONENTS, kube_client=object,
                    now=NOW).plan()


def test_without_kubernetes_the_steps_apply_nothing(planned):
    """config_kubernetes=false (only the files for config_files_hosts): no step touches a cluster."""
    ctx = steps.PlanContext.load(planned[2], steps.effective(RAW, SPECS), client=lambda: pytest.fail('a client'))
    for name in steps.STEP_ORDER[:-1]:
        out = steps.run_step(name, ctx)
        assert out['changed'] is False and 'nothing to apply' in out['msg']


def test_an_unreachable_digitalocean_api_joins_the_other_problems():
    """The DigitalOcean stage runs despite a variable at fault; when the API cannot be asked (no token, no
    network), that is one more problem of the list, not the only answer (molecule/default's bad-scheduler run)."""
    from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanError

    def no_api(v):
        raise DigitalOceanError('no DigitalOcean API token')

    raw = dict(RAW, config_database_source='digitalocean', config_do_database_cluster='pg', web_replicas='two')
    with pytest.raises(errors.PlanError) as caught:
        plan.Deploy(raw, SPECS, plan.COMPONENTS, do_client=no_api, now=NOW).plan()
    assert sorted(e.key for e in caught.value.errors) == ['config_do_database_cluster', 'web_replicas']
    with pytest.raises(errors.PlanError) as alone:  # alone, it is the answer, naming the cluster's variable
        plan.Deploy(dict(raw, web_replicas=2), SPECS, plan.COMPONENTS, do_client=no_api, now=NOW).plan()
    assert [e.key for e in alone.value.errors] == ['config_do_database_cluster']


# ------------------------------------------------------------------ the record, long migrations, the backup gate
RUNNING = {'kind': 'Job', 'name': 'masto-migrate-pre', 'msg': 'Job masto-migrate-pre is still running for 1 min, now at '
           'migration 20260601000100 IndexContent; it was left running (a later run re-attaches to it)'}


def _job(ctx, component, state):
    job = [o for o in ctx.manifests[component] if o['kind'] == 'Job'][0]
    conditions = {'complete': [{'type': 'Complete', 'status': 'True'}], 'running': []}[state]
    return job['metadata']['name'], dict(job, status={'conditions': conditions, 'active': int(state == 'running')})


def _applying(monkeypatch, ctx, results, seen):
    """apply_component stood in for: it notes the record as the cluster had it when the component was applied."""
    def apply_component(ctx_, component, progress):
        current = json.loads(ctx_.client.record['data']['record.json'])['current'] if ctx_.client.record else None
        seen.append((component, list((current or {}).get('lines_run') or [])))
        out = {'changed': True, 'pruned': [], 'objects': [], 'summary': ''}
        out.update(results.get(component) or {})
        return out
    monkeypatch.setattr(steps, 'apply_component', apply_component)
    monkeypatch.setattr(steps.step_record, 'schema_version_of', lambda ctx_, component: '20260601000100')


def test_a_pre_migration_left_running_stops_the_later_steps_and_a_rerun_goes_on(planned, monkeypatch):
    ctx = _ctx(planned, [], migrations_post='hold')
    name, running_job = _job(ctx, 'migrate-pre', 'running')
    seen = []
    _applying(monkeypatch, ctx, {'migrate-pre': {'running_jobs': [RUNNING]}}, seen)
    steps.run_step('config', ctx)
    out = steps.run_step('migrate-pre', ctx)
    assert out['migrations_running'] is True and out['warnings'] == [out['msg']]
    assert 'still running for 1 min, now at migration 20260601000100 IndexContent' in out['msg']
    assert 'run the deploy again later: it re-attaches' in out['msg']
    assert 'Not started: web, streaming, sidekiq, gate, migrate-post' in out['msg']
    ctx.client.jobs[name] = running_job  # the Job runs on: each later step sees it (its own task, its own look)
    for step in ('web', 'streaming', 'sidekiq', 'gate', 'migrate-post'):
        later = steps.run_step(step, ctx)
        assert later['changed'] is False and later['migrations_running'] is True, step
        assert later['msg'].startswith('not started: the pre-deployment migrations are still running (Job %s running'
                                       % name), later['msg']
    steps.finish(ctx, 'ok')
    assert seen == [('config', []), ('migrate-pre', [])]  # nothing rolled out
    current = ctx.client.record_writes[-1]
    assert (current['phase'], current['migrations_running'], current['outcome'], current['lines_run']) == \
        ('config', 'pre', 'running', [])
    assert current['version'] == ctx.data['version'] and current['images'] == ctx.data['images']

    # The re-run (a new plan, the same version): the Job has finished meanwhile.
    ctx.client.jobs[name] = _job(ctx, 'migrate-pre', 'complete')[1]
    seen[:] = []
    _applying(monkeypatch, ctx, {}, seen)
    for step in steps.STEP_ORDER[:-1]:
        steps.run_step(step, ctx)
    steps.finish(ctx, 'ok')
    line = '.'.join(ctx.data['version'].lstrip('v').split('.')[:2])
    # the line was recorded BEFORE the first pod of the new version could start
    assert seen == [('config', []), ('migrate-pre', []), ('web', [line]), ('streaming', [line]), ('sidekiq', [line])]
    current = ctx.client.record_writes[-1]
    assert (current['phase'], current['migrations_running'], current['outcome'], current['post_migrations'],
            current['schema_version']) == ('rollout', None, 'ok', 'held', '20260601000100')
    stored = json.loads(ctx.client.record['data']['record.json'])
    assert stored['history'] == []  # one deploy of one version: one entry, continued by the re-run


def test_a_post_migration_left_running_is_recorded_and_re_attached_without_the_gate(planned, monkeypatch):
    confirmed = _backups.utc_text(datetime.datetime.now(datetime.timezone.utc))
    ctx = _ctx(planned, [], migrations_backup_confirmed_at=confirmed)
    seen = []
    _applying(monkeypatch, ctx, {'migrate-post': {'running_jobs': [dict(RUNNING, name='masto-migrate-post')]}}, seen)
    for step in steps.STEP_ORDER[:-1]:
        steps.run_step(step, ctx)
    steps.finish(ctx, 'ok')
    current = ctx.client.record_writes[-1]
    assert (current['phase'], current['post_migrations'], current['migrations_running'], current['outcome']) == \
        ('rollout', 'running', 'post', 'running')
    assert current['restore_point'] == {'source': 'operator', 'created_at': confirmed}
    # the re-run: the post Job exists, so the gate is behind (no backup asked again), and the Job is re-attached
    name, running_job = _job(ctx, 'migrate-post', 'running')
    ctx.client.jobs[name] = running_job
    ctx.v = dict(ctx.v, migrations_backup_confirmed_at='')
    gate = steps.run_step('gate', ctx)
    assert 'started by an earlier run (Job %s running' % name in gate['msg']
    _applying(monkeypatch, ctx, {}, seen)
    steps.run_step('migrate-post', ctx)
    steps.finish(ctx, 'ok')
    current = ctx.client.record_writes[-1]
    assert (current['phase'], current['post_migrations'], current['migrations_running'], current['outcome']) == \
        ('post', 'done', None, 'ok')


class FakeDigitalOcean(object):
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def database_backups(self, cluster_id):
        self.asked.append(cluster_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


CLUSTER = {'id': 'c0ffee00-0000-4000-8000-000000000001', 'name': 'mastodon-pg', 'engine': 'pg', 'version': '16',
           'region': 'fra1', 'size': 'db-s-1vcpu-2gb', 'num_nodes': 2}


@pytest.mark.parametrize('age_hours,variable', [(5, None), (72, 'migrations_backup_max_age'),
                                                (None, 'config_do_database_cluster'),
                                                ('error', 'config_do_database_cluster')])
def test_the_backup_gate_reads_the_plans_cluster_and_names_the_variable(planned, age_hours, variable):
    from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanError
    now = datetime.datetime.now(datetime.timezone.utc)
    if age_hours == 'error':
        answer = DigitalOceanError('GET /v2/databases/x/backups: HTTP 500')
    else:
        answer = {'backups': [] if age_hours is None else
                  [{'created_at': _backups.utc_text(now - datetime.timedelta(hours=age_hours)), 'size_gigabytes': 0.1}]}
    ctx = _ctx(planned, [], config_database_source='digitalocean')
    ctx.data['database_cluster'] = dict(CLUSTER)
    api = FakeDigitalOcean(answer)
    ctx.do_client = lambda v: api
    problems = steps.gate_problems(ctx)
    assert api.asked == [CLUSTER['id']]
    if variable is None:
        assert problems == [] and 'doctl databases create mastodon-pg-restored-' in ctx.restore_message
        assert ctx.client.record_writes[-1]['restore_point']['cluster'] == 'mastodon-pg'
    else:
        assert [p.key for p in problems] == [variable], problems
        assert 'refusing the post-deployment migrations' in str(problems[0])
        assert ctx.client.record_writes == []
        if age_hours == 72:  # the newest restore point and how to restore it
            assert '--restore-from-cluster-name mastodon-pg' in str(problems[0])


def test_the_handoff_carries_the_clusters_public_fields_only():
    cluster = dict(CLUSTER, connection={'password': 'pw-never', 'uri': 'postgresql://doadmin:pw-never@h'},
                   users=[{'name': 'doadmin', 'password': 'pw-never'}])
    facts = steps.step_record.cluster_facts(cluster)
    assert facts == CLUSTER and 'pw-never' not in json.dumps(facts)


class _NamespaceRace(object):
    """The API server as two first installs see it: POST Namespace answers `status`; the Lease reads `lease`."""

    def __init__(self, status, lease=None):
        self.status, self.lease, self.calls = status, lease, []

    def path(self, api_version, kind, namespace=None, name=None):
        return '/'.join(p for p in (api_version, kind, namespace, name) if p)

    def request(self, method, path, body=None, **kwargs):
        self.calls.append((method, path))
        if method == 'POST':
            return self.status, {'message': 'namespaces "lock-ns" already exists'}
        return (200, self.lease) if self.lease else (404, {})


def _first_install_ctx(client, check_mode=False, namespace_missing=True):
    ctx = steps.PlanContext.__new__(steps.PlanContext)
    ctx._client, ctx.check_mode, ctx.namespace_missing = client, check_mode, namespace_missing
    ctx.lease = {'holder': 'me #1', 'namespace': 'lock-ns', 'name': 'mastodon'}
    return ctx


def test_a_first_install_creates_the_namespace_before_the_lock_and_a_namespace_that_appeared_refuses():
    created = _NamespaceRace(201)
    steps.lease_first_install(_first_install_ctx(created))
    assert created.calls == [('POST', 'v1/Namespace')]

    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    held = _NamespaceRace(409, {'spec': {'holderIdentity': 'other #2', 'leaseDurationSeconds': 120,
                                         'acquireTime': now, 'renewTime': now}})
    with pytest.raises(errors.PlanError) as refused:
        steps.lease_first_install(_first_install_ctx(held))
    assert 'held by other #2' in str(refused.value) and refused.value.errors[0].key == 'config_name'

    ran = _NamespaceRace(409)  # the other install finished (no Lease held): this plan is stale all the same
    with pytest.raises(errors.PlanError) as refused:
        steps.lease_first_install(_first_install_ctx(ran))
    assert 'created by another deploy' in str(refused.value) and 'Nothing was written' in str(refused.value)
    assert [m for m, dummy in ran.calls] == ['POST', 'GET']

    for ctx in (_first_install_ctx(_NamespaceRace(201), check_mode=True),
                _first_install_ctx(_NamespaceRace(201), namespace_missing=False)):
        steps.lease_first_install(ctx)
        assert ctx._client.calls == []  # check mode, or an existing namespace: nothing sent


class _LeaseServer(object):
    """A Lease held by `holder` (renewTime: now): GET answers it, PUT takes the body."""

    def __init__(self, holder):
        now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
        self.lease = {'metadata': {'name': 'mastodon-deploy', 'resourceVersion': '1'},
                      'spec': {'holderIdentity': holder, 'leaseDurationSeconds': 120, 'acquireTime': now,
                               'renewTime': now}}
        self.calls = []

    def path(self, api_version, kind, namespace=None, name=None):
        return '/'.join(p for p in (api_version, kind, namespace, name) if p)

    def request(self, method, path, body=None, **kwargs):
        self.calls.append(method)
        if method == 'PUT':
            self.lease = body
        return 200, self.lease


def test_a_step_renews_the_lease_only_when_this_deploy_wrote_it_a_third_of_its_duration_ago(tmp_path, monkeypatch):
    server = _LeaseServer('me #1')
    ctx = _first_install_ctx(server, namespace_missing=False)
    ctx.path = str(tmp_path / 'plan.json')
    ctx.lease['renewed'] = time.time() - 5  # the plan took it 5 s ago
    assert steps.lease_renew(ctx) is None and server.calls == []  # fresh: no request

    ctx.lease['renewed'] = time.time() - lock.DEFAULT_DURATION_S / 3.0 - 1
    assert steps.lease_renew(ctx) is not None and server.calls == ['GET', 'PUT']
    assert float((tmp_path / steps.LEASE_MARK).read_text()) > time.time() - 5  # the next step sees this renewal
    steps.lease_renew(ctx)
    assert server.calls == ['GET', 'PUT']

    # A renewal this deploy did not write counts for nothing: another holder's Lease still refuses the step.
    stolen = _LeaseServer('other #2')
    ctx = _first_install_ctx(stolen, namespace_missing=False)
    ctx.path, ctx.lease['renewed'] = None, None
    with pytest.raises(errors.PlanError) as refused:
        steps.lease_renew(ctx)
    assert 'held by other #2' in str(refused.value) and stolen.calls == ['GET']


def _pre_job(ctx, signal=True, condition='Complete'):
    """The plan's pre-deployment Job (with or without the new-keys signal) and the cluster's copy of it."""
    [job] = ctx.manifests['migrate-pre']
    job = copy.deepcopy(job)
    container = job['spec']['template']['spec']['containers'][0]
    container['env'] = [e for e in container['env'] if signal or e['name'] != _migrations.FRESH_SECRETS_VARIABLE]
    ctx.manifests = dict(ctx.manifests, **{'migrate-pre': [job]})
    live = dict(copy.deepcopy(job), status={'conditions': [{'type': condition, 'status': 'True'}]} if condition else {})
    ctx.client.jobs = {job['metadata']['name']: live}
    return job


def test_a_first_install_passes_the_backup_gate_without_asking_for_a_backup(planned):
    """A new DigitalOcean cluster lists its first backup a day later, and before a first install the database was
    empty: the gate asks for no backup when the pre-deployment Job proves it, having succeeded with the new-keys
    signal (its script refuses a database holding a schema)."""
    ctx = _ctx(planned, [], config_database_source='digitalocean')
    ctx.data['database_cluster'] = dict(CLUSTER)
    api = FakeDigitalOcean({'backups': []})
    ctx.do_client = lambda v: api
    _pre_job(ctx)
    assert steps.gate_problems(ctx) == [] and api.asked == []
    assert 'a first install: the pre-deployment Job loaded the schema' in ctx.restore_message


@pytest.mark.parametrize('signal, condition', [(False, 'Complete'), (True, None), (True, 'Failed')],
                         ids=['adopted database, its secrets given', 'Job still running', 'Job failed'])
def test_without_proof_of_an_empty_database_the_gate_asks_for_a_backup(planned, signal, condition):
    """No trace of an instance in the namespace is no proof: an existing database adopted under a new name, with
    its own secrets, has a schema whose post-deployment migrations drop data. Without the new-keys Job having
    succeeded, the same empty backup list refuses."""
    ctx = _ctx(planned, [], config_database_source='digitalocean')
    ctx.data['database_cluster'] = dict(CLUSTER)
    api = FakeDigitalOcean({'backups': []})
    ctx.do_client = lambda v: api
    _pre_job(ctx, signal=signal, condition=condition)
    assert [p.key for p in steps.gate_problems(ctx)] == ['config_do_database_cluster'] and api.asked == [CLUSTER['id']]


# ------------------------------------------------------------------ a component the plan found settled
class _NoServer(object):
    """A cluster the step must not ask: every request is recorded and answered 500."""

    def __init__(self):
        self.asked = []

    @staticmethod
    def path(api_version, kind, namespace=None, name=None, subresource=None):
        return '/%s/%s/%s/%s' % (api_version, kind, namespace, name)

    def resource(self, api_version, kind):
        self.asked.append(('discovery', kind))
        raise steps.KubeError('no server here', status=500)

    def request(self, method, *args, **kwargs):
        self.asked.append((method,) + args[:1])
        return 500, {'message': 'no server here'}


def _settled_ctx(planned, **data):
    deploy, dummy, path = planned
    ctx = steps.PlanContext.load(path, steps.effective(RAW, SPECS), client=_NoServer())
    ctx.v = dict(ctx.v, config_kubernetes=True)
    objects = [{'kind': o['kind'], 'namespace': o['metadata'].get('namespace'), 'name': o['metadata']['name'],
                'action': 'unchanged'} for o in deploy.manifests['web']]
    ctx.data.update({'settled': {'web': objects}, 'planned_at': time.time() - 2}, **data)
    return ctx, objects


def test_a_step_takes_a_settled_component_from_the_plan_without_asking_the_server(planned):
    """An idempotent re-run: the plan's dry-run of a moment ago found web settled; the step does not dry-run it
    again, and reports it unchanged, with the plan's summary."""
    ctx, objects = _settled_ctx(planned)
    out = steps.apply_component(ctx, 'web', None)
    assert ctx.client.asked == []
    assert out['changed'] is False and out['pruned'] == [] and out['objects'] == objects
    assert '%d unchanged' % len(objects) in out['summary'] and 'web: no restart' in out['summary']


@pytest.mark.parametrize('case', ['old plan', 'not settled', 'downtime'])
def test_a_step_asks_the_server_again_when_the_plan_is_old_or_the_component_not_settled(planned, case):
    ctx, dummy = _settled_ctx(planned)
    if case == 'old plan':  # e.g. after a long migration: the cluster may have moved since
        ctx.data['planned_at'] = time.time() - steps.SETTLED_FOR_S - 1
    elif case == 'not settled':
        ctx.data['settled'] = {'streaming': []}
    else:  # the stop step of an upgrade with downtime scaled web down after the plan
        ctx.v['config_upgrade_with_downtime'] = True
    with pytest.raises(Exception):
        steps.apply_component(ctx, 'web', None)
    assert ctx.client.asked, case


def _dry_run(*entries, **result):
    applier = steps.ComponentApplier.__new__(steps.ComponentApplier)
    applier.plan_result = dict({'changed': False, 'pruned': [], 'objects': list(entries)}, **result)
    return applier


def _entry(kind, action='unchanged', status=None, spec=None):
    return {'kind': kind, 'apiVersion': 'v1', 'namespace': 'ns', 'name': kind.lower(), 'action': action,
            'object': {'kind': kind, 'metadata': {'generation': 1}, 'spec': spec or {'replicas': 1},
                       'status': status or {}}}


def test_settled_means_unchanged_not_pruned_rolled_out_and_complete():
    ready = {'observedGeneration': 1, 'replicas': 1, 'updatedReplicas': 1, 'readyReplicas': 1, 'availableReplicas': 1}
    complete = {'conditions': [{'type': 'Complete', 'status': 'True'}], 'succeeded': 1}
    settled = _dry_run(_entry('ConfigMap'), _entry('Deployment', status=ready), _entry('Job', status=complete))
    assert [o['kind'] for o in settled.settled_objects()] == ['ConfigMap', 'Deployment', 'Job']
    assert _dry_run().settled_objects() == []
    for unsettled in (_dry_run(_entry('ConfigMap', action='configured')),
                      _dry_run(_entry('ConfigMap'), changed=True),  # the ApplySet parent changes
                      _dry_run(_entry('ConfigMap'), pruned=[{'kind': 'Job', 'name': 'old'}]),
                      _dry_run(_entry('Deployment', status=dict(ready, readyReplicas=0))),  # a rollout left unready
                      _dry_run(_entry('Job', status={'active': 1}))):  # a migration still running
        assert unsettled.settled_objects() is None, unsettled.plan_result
