# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The steps of a deploy (docs/dev/ARCHITECTURE.md section 1): what the plan rendered and checked, applied one
visible step at a time, and the handoff file that carries the plan from its task to the steps' tasks.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
import types

from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import step_record
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import downtime
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import lock
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.applier import ComponentApplier, summary_text
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards import backup_secret
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.variables import check_variables
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import APPLYSET_PART_OF, Applier, KubeError, applyset_id
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import status_message
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

# The steps in the order of playbooks/deploy.yml, and the tag of each there.
STEP_ORDER = ('config', 'stop', 'migrate-pre', 'web', 'streaming', 'sidekiq', 'gate', 'migrate-post', 'finish')
STEP_TAGS = {'config': 'config', 'stop': 'migrations', 'migrate-pre': 'migrations', 'web': 'web', 'streaming': 'streaming',
             'sidekiq': 'sidekiq', 'gate': 'post-migrations', 'migrate-post': 'post-migrations', 'finish': 'always'}
# The component a step applies (the gate and finish apply none).
COMPONENT_OF = {'config': 'config', 'migrate-pre': 'migrate-pre', 'web': 'web', 'streaming': 'streaming',
                'sidekiq': 'sidekiq', 'migrate-post': 'migrate-post'}
ROLLOUT = ('web', 'streaming', 'sidekiq')
WAITS = {'config': (None, 'config_apply_timeout'), 'migrate-pre': (None, 'migrations_wait_timeout'),
         'migrate-post': (None, 'migrations_wait_timeout'), 'web': ('web_wait', 'web_wait_timeout'),
         'streaming': ('streaming_wait', 'streaming_wait_timeout'), 'sidekiq': ('sidekiq_wait', 'sidekiq_wait_timeout')}
HANDOFF_NAME = 'plan.json'
HANDOFF_FORMAT = 1
LEASE_MARK = 'lease-renewed'  # beside the plan file: when a step last wrote the Lease
SETTLED_FOR_S = 60  # how long a step takes the plan's dry-run of a settled component as its own
GATE_POLL = 2.0
POST_LATER = 'ansible-playbook <your deploy playbook> --tags post-migrations -e migrations_post=run'


class HandoffError(Exception):
    """The handoff file cannot be used (missing, unreadable, or made from other variables)."""


def effective(raw_vars, specs):
    """The templated role variables as the plan sees them: typed, and the specs' defaults where unset (a role's
    step sees its role's defaults, the plan task outside the role does not: the same deploy either way), plus
    the names of the variables the plan refuses."""
    values, errors = check_variables(raw_vars, specs)
    values.pop('migrations_phase', None)  # it picks the migrations role's step; the plan renders both phases
    return {'values': values, 'refused': sorted(set(e.key for e in errors))}


def fingerprint(key, variables):
    """HMAC-SHA256 of the canonical JSON of the effective role variables: equal variables, equal fingerprint,
    and nothing about the values can be learnt from it without the key (which stays in the 0600 file)."""
    text = json.dumps(variables, sort_keys=True, separators=(',', ':'), default=repr)
    return hmac.new(key, text.encode('utf-8'), hashlib.sha256).hexdigest()


def labelled(manifests, v):
    """{component: objects} with each object's ApplySet label already set, as Applier.prepare sets it on the plan's
    objects: a pod template shares its labels dict with its workload (_manifests template()), so the pods carry the
    label too. JSON would not keep that sharing; setting the label before the handoff keeps the objects a step
    applies equal to those the plan dry-ran (a Job's template is immutable: a difference would be refused)."""
    out = {}
    for component, objects in manifests.items():
        objects = copy.deepcopy(objects)  # keeps the sharing within each object
        set_id = applyset_id('%s-set-%s' % (v['config_name'], component), v['config_namespace'])
        for obj in objects:
            labels = obj['metadata'].get('labels')
            if labels is not None:
                labels[APPLYSET_PART_OF] = set_id
        out[component] = objects
    return out


class PlanContext(object):
    """What a step needs from the plan: typed variables, rendered objects, origins, and the client."""

    def __init__(self, data, client=None, check_mode=False, diff=False, path=None):
        self.data = data
        self.v = data['vars']
        self.manifests = data['manifests']
        self.origins = dict(((kind, name, path_), variable) for kind, name, path_, variable in data['origins'])
        self.namespace_missing = data['namespace_missing']
        self.backup = data.get('backup')
        self.record = data.get('record')
        self.lease = data.get('lease')
        self._client = client  # a KubeClient, or a function making one when first needed
        self.check_mode = check_mode
        self.diff = diff
        self.path = path
        self.do_client = None  # do_client(v) -> DigitalOceanClient, set by the action (the gate reads backups)
        self.restore_message = None

    @property
    def client(self):
        if isinstance(self._client, (types.FunctionType, types.MethodType)):
            self._client = self._client()
            if hasattr(self._client, 'seed_discovery'):
                self._client.seed_discovery(self.data.get('discovery'))
        return self._client

    @staticmethod
    def data_of(deploy, variables, key):
        """The serialisable plan of a Deploy whose plan() succeeded."""
        return {'format': HANDOFF_FORMAT, 'fingerprint': fingerprint(key, variables), 'key': key.hex(),
                'vars': deploy.v, 'manifests': labelled(deploy.manifests, deploy.v),
                'origins': [[kind, name, path, variable] for (kind, name, path), variable in deploy.manifests.origins.items()],
                'namespace_missing': deploy.state.get('namespace') is None and bool(deploy.v['config_kubernetes']),
                'backup': deploy.backup, 'backup_name': deploy.kept.get('backup_name'),
                'record': deploy.state.get('record'), 'lease': None,
                'labels': deploy.model['labels'], 'version': deploy.model['version'],
                'summary': summary_text(deploy.summaries(), deploy.restarts()),
                'generated': sorted(deploy.generated),
                'images': {'web': deploy.model['image'], 'streaming': deploy.model['streaming_image']},
                # the gate's backup check: the PostgreSQL cluster's id and what the restore commands name
                'database_cluster': step_record.cluster_facts((deploy.endpoints or {}).get('cluster')),
                'discovery': getattr(deploy.kube_client(), 'discovery_cache', dict)() if deploy.v['config_kubernetes'] else {},
                # what the steps may take from the plan's dry-run instead of their own (settled_step)
                'planned_at': time.time(),
                'settled': dict(item for item in ((a.component, a.settled_objects()) for a in deploy.appliers)
                                if item[1] is not None)}

    @classmethod
    def of_deploy(cls, deploy, variables, client=None):
        """A context from a plan made in this task (a step run without a plan task before it)."""
        return cls(json.loads(json.dumps(cls.data_of(deploy, variables, secrets.token_bytes(32)))), client=client,
                   check_mode=deploy.check_mode, diff=deploy.diff)

    @classmethod
    def load(cls, path, variables, client=None, check_mode=False, diff=False, verify=True):
        try:
            with open(path, encoding='utf-8') as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise HandoffError('the plan file %s cannot be read (%s): re-run the plan task' % (path, exc.__class__.__name__))
        if data.get('format') != HANDOFF_FORMAT:
            raise HandoffError('the plan file %s has another format: re-run the plan task' % path)
        if verify and not hmac.compare_digest(fingerprint(bytes.fromhex(data['key']), variables), data['fingerprint']):
            raise HandoffError('this plan was made from other variables (the role variables differ from those of the '
                               'plan task): re-run the plan task')
        return cls(data, client=client, check_mode=check_mode, diff=diff, path=path)


def write_private(prefix, files):
    """A new 0700 directory (tempfile.mkdtemp) holding {name: text} as 0600 files; removed again if a write
    fails. Returns its path."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        for name, text in sorted(files.items()):
            fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(text)
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def write_handoff(data, files=None):
    """(directory, path): the plan as a 0600 file in a new 0700 directory, with the files for config_files_hosts."""
    files = dict(files or {})
    files[HANDOFF_NAME] = json.dumps(data)
    directory = write_private('fediops-plan-', files)
    return directory, os.path.join(directory, HANDOFF_NAME)


def files_fact(v, directory, files):
    """Where playbooks/deploy.yml copies .env.production and the CA (config_files_hosts): the sources in the
    plan's directory and the role's typed options, so the playbook needs no default() of its own."""
    def src(name):
        return os.path.join(directory, name) if name in (files or {}) else None
    return {'hosts': list(v['config_files_hosts']), 'env_src': src('env.production'),
            'env_dest': v['config_files_env_dest'], 'ca_src': src('ca.crt'), 'ca_dest': v['config_files_ca_dest'],
            'owner': v['config_files_owner'], 'group': v['config_files_group'], 'backup': v['config_files_backup']}


def remove_handoff(path):
    """Remove the plan's directory (only a directory this module made: its name and its plan file say so)."""
    directory = os.path.dirname(path)
    if os.path.basename(directory).startswith('fediops-plan-') and os.path.basename(path) == HANDOFF_NAME:
        shutil.rmtree(directory, ignore_errors=True)
        return True
    return False


# ------------------------------------------------------------------ call sites of the record and the lock
# The deploy record (_deploy/record.py, kept by _deploy/step_record.py) and the Lease (_deploy/lock.py).
def record_phase(ctx, phase, **fields):
    """Write the deploy record's phase (config, pre, rollout, post, or finish with outcome) and fields."""
    return step_record.record_phase(ctx, phase, **fields)


def backup_check(ctx):
    """[ConfigError] of the backup gate (_backups through step_record.backup_check); the restore point's message
    is kept in ctx.restore_message for the gate's result."""
    if step_record.schema_loaded(ctx):
        # Nothing to go back to: the pre-deployment Job found the database empty and loaded the schema (so the
        # post-deployment migrations have nothing to do), and a new DigitalOcean cluster lists its first backup
        # only a day later.
        ctx.restore_message = ('a first install: the pre-deployment Job loaded the schema into an empty database, '
                               'there is no earlier state to keep')
        return []
    errors, ctx.restore_message = step_record.backup_check(ctx)
    return errors


def _lock_refusal(exc):
    """The lock's answer as the plan's refusal: the instance (config_name in config_namespace) is being deployed."""
    return PlanError([ConfigError('config_name', str(exc))], 'another deploy of this instance is running')


def lease_take(client, v, check_mode):
    """The deploy lock (a Lease <config_name>-deploy, _deploy/lock.py), taken by the plan before anything is written:
    {'holder', 'namespace', 'name'} for the handoff, or None without a cluster. Check mode writes nothing and only
    refuses when another deploy holds it. On a first install the namespace does not exist yet: the config step
    creates it bare and takes the lock before writing anything else (lease_first_install, then lease_renew)."""
    if client is None:
        return None
    namespace, name = v['config_namespace'], v['config_name']
    holder = lock.holder_identity()
    renewed = None
    try:
        if check_mode:
            lock.check_free(client, namespace, name, holder)
            return None
        started = time.time()  # the Lease's renewTime is this moment or later
        lock.acquire(client, namespace, name, holder)
        renewed = started
    except lock.NoNamespace:
        pass
    except lock.LockError as exc:
        raise _lock_refusal(exc)
    return {'holder': holder, 'namespace': namespace, 'name': name, 'renewed': renewed}


def lease_first_install(ctx):
    """A first install: the plan found no namespace, so there was nowhere to take the lock. The config step then
    creates the namespace itself, bare, before anything else (POST: of two creators the API server answers 201 to
    one and 409 to the other), so the lock is taken before the kept secrets are written. A namespace that appeared
    since the plan means another deploy installed (or is installing) this instance, with its own generated
    secrets: this plan is stale, applying it would replace them. Refused, nothing written."""
    lease = ctx.lease
    if not lease or not ctx.namespace_missing or ctx.check_mode:
        return
    namespace, name = lease['namespace'], lease['name']
    status, body = ctx.client.request('POST', ctx.client.path('v1', 'Namespace'),
                                      body={'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}})
    if status == 201:
        return
    if status != 409:
        raise KubeError('cannot create the namespace %s: HTTP %s: %s' % (namespace, status, status_message(body)),
                        status=status)
    try:
        lock.check_free(ctx.client, namespace, name, lease['holder'])
    except lock.LockError as exc:
        raise _lock_refusal(exc)
    raise PlanError([ConfigError('config_name', 'namespace %s was created by another deploy after this deploy\'s plan '
                                 'found it missing: %s was installed there meanwhile (or the namespace is being '
                                 'deleted). Nothing was written; run the deploy again, its plan then sees that '
                                 'install.' % (namespace, name))], 'another deploy of this instance ran')


def _renewal_mark(ctx):
    """The file in the plan's directory saying when a step of this deploy last wrote the Lease (None when the step
    planned for itself)."""
    return os.path.join(os.path.dirname(ctx.path), LEASE_MARK) if ctx.path else None


def _last_renewal(ctx):
    """When this deploy last took or renewed its Lease (time.time()), or None."""
    times = [ctx.lease.get('renewed') or 0]
    mark = _renewal_mark(ctx)
    if mark:
        try:
            with open(mark, encoding='utf-8') as handle:
                times.append(float(handle.read()))
        except (OSError, ValueError):
            pass
    return max(times) or None


def _mark_renewal(ctx, when):
    mark = _renewal_mark(ctx)
    if mark:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(mark), prefix='.%s-' % LEASE_MARK)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(repr(when))
        os.replace(tmp, mark)


def lease_renew(ctx):
    """Every step renews the lock first (or takes it, once the namespace exists): LockHeld/LockLost refuse the step.
    A Lease this deploy wrote less than a third of its duration ago is left as it is (no request): no other deploy
    can take it before it expires, and the steps of an idempotent re-run follow each other within a second."""
    lease = ctx.lease
    if not lease or ctx.check_mode:
        return None
    last = _last_renewal(ctx)
    if last is not None and 0 <= time.time() - last < lock.DEFAULT_DURATION_S / 3.0:
        return None
    started = time.time()
    try:
        answer = lock.acquire(ctx.client, lease['namespace'], lease['name'], lease['holder'])
    except lock.NoNamespace:
        return None
    except lock.LockError as exc:
        raise _lock_refusal(exc)
    _mark_renewal(ctx, started)
    return answer


def lease_renewer(ctx):
    """A background renewal while a step waits (a migration may take hours; the Lease lasts DEFAULT_DURATION_S)."""
    lease = ctx.lease
    if not lease or ctx.check_mode:
        return None
    return lock.Renewer(ctx.client, lease['namespace'], lease['name'], lease['holder'])


def lease_release(ctx):
    """Give the lock back (finish; a step that planned for itself)."""
    lease = ctx.lease
    if not lease or ctx.check_mode:
        return False
    try:
        return lock.release(ctx.client, lease['namespace'], lease['name'], lease['holder'])
    except (lock.LockError, KubeError):
        return False  # it expires by itself after its duration


# ------------------------------------------------------------------ the steps
def brief(result):
    return {'changed': result['changed'], 'pruned': result['pruned'],
            'objects': [dict((k, r[k]) for k in ('kind', 'namespace', 'name', 'action')) for r in result['objects']]}


def settled_step(ctx, component):
    """The step's result taken from the plan, or None. The plan's dry-run found the component settled (nothing to
    write or prune, rolled out, its Jobs complete: ComponentApplier.settled_objects) less than SETTLED_FOR_S ago,
    and no stop for an upgrade with downtime ran in between: asking the server again would answer the same (an
    idempotent re-run). Later, or for a component with anything to do, the step dry-runs again first."""
    objects = (ctx.data.get('settled') or {}).get(component)
    if objects is None or downtime.active(ctx.v):
        return None
    if not 0 <= time.time() - (ctx.data.get('planned_at') or 0) < SETTLED_FOR_S:
        return None
    counts = {'unchanged': ['%s/%s' % (o['kind'], o['name']) for o in objects]} if objects else {}
    out = {'changed': False, 'pruned': [], 'objects': list(objects),
           'summary': summary_text([(component, counts)], {component: []})}
    if ctx.diff:
        out['diff'] = [{'prepared': out['summary']}]
    return out


def apply_component(ctx, component, progress):
    """Dry-run the component again (the cluster may have moved since the plan), then write what differs, prune
    its ApplySet, wait. In check mode the dry-run is the result. A component the plan found settled a moment ago
    is not asked for again (settled_step)."""
    settled = settled_step(ctx, component)
    if settled is not None:
        return settled
    v = ctx.v
    wait_var, timeout_var = WAITS[component]
    # A migration Job still running at migrations_wait_timeout is left running (never killed: a re-run re-attaches),
    # its log read for the migration it is at (as Deploy.dry_run does).
    jobs = dict(detach_running_jobs=True, describe_job_log=_migrations.describe_progress) \
        if component in ('migrate-pre', 'migrate-post') else {}
    applier = ComponentApplier(ctx.client, component, v['config_namespace'], '%s-set-%s' % (v['config_name'], component),
                               ctx.origins, new_namespace=ctx.namespace_missing, diff=ctx.diff,
                               wait=v[wait_var] if wait_var else True, wait_timeout=v[timeout_var], progress=progress,
                               **jobs)
    applier.plan(ctx.manifests[component])
    if ctx.check_mode:
        result = applier.plan_result
        diffs = result.get('diff') or []
    else:
        try:
            result = applier.apply()
        except KubeError as exc:
            raise KubeError('%s: %s' % (component, exc.msg), status=exc.status)
        diffs = applier.diffs
    out = brief(result)
    if result.get('running_jobs'):
        out['running_jobs'] = result['running_jobs']
    out['summary'] = summary_text([(component, applier.summary())], {component: applier.restarts()})
    if ctx.diff:
        out['diff'] = [{'prepared': out['summary']}] + list(diffs)
    return out


def step_config(ctx, progress):
    backup_written = False
    if ctx.backup and not ctx.check_mode:
        v = ctx.v
        labels = ctx.data['labels']
        saver = Applier(ctx.client, namespace=v['config_namespace'])
        saver.present([backup_secret(v['config_name'], v['config_namespace'], labels, ctx.backup,
                                     ctx.data.get('backup_name'))])
        backup_written = True
    out = apply_component(ctx, 'config', progress)
    out['changed'] = out['changed'] or backup_written or bool(ctx.backup and ctx.check_mode)
    record_phase(ctx, 'config')
    return out


def left_running(out, later):
    """The step's result when its migration Job outlived migrations_wait_timeout: not a failure (rc 0), a
    warning saying what runs, where it is, and that a re-run re-attaches."""
    msg = '%s; run the deploy again later: it re-attaches to the Job (never a second one) and goes on once it has ' \
          'finished. %s' % ('; '.join(j['msg'] for j in out['running_jobs']),
                            'Not started: %s' % ', '.join(later) if later else 'Nothing else was to be done')
    out.update(migrations_running=True, msg=msg, warnings=[msg])
    return out


def waiting_for_pre(ctx):
    """The result of a step after migrate-pre while the pre-deployment Job still runs (the live Job decides: a
    step is its own task, and --tags may have skipped migrate-pre): nothing done, rc 0, or None to go on."""
    running = step_record.job_running(ctx, 'migrate-pre')
    if running is None:
        return None
    return {'changed': False, 'migrations_running': True,
            'msg': 'not started: the pre-deployment migrations are still running (%s); the new version needs them. '
                   'Run the deploy again later: it re-attaches and goes on' % running}


def step_migrate_pre(ctx, progress):
    out = apply_component(ctx, 'migrate-pre', progress)
    if out.get('running_jobs'):
        # A Job still running has not reached its phase: the entry stays where it was, migrations_running says why.
        record_phase(ctx, 'config', migrations_running='pre', running_job=out['running_jobs'][0]['name'])
        return left_running(out, ['web', 'streaming', 'sidekiq', 'gate', 'migrate-post'])
    if ctx.check_mode:
        record_phase(ctx, 'pre', migrations_running=None, running_job=None)
    else:
        record_phase(ctx, 'pre', migrations_running=None, running_job=None,
                     schema_version=step_record.schema_version_of(ctx, 'migrate-pre'),
                     # it succeeded: with the new-keys signal, on an empty database (a first install)
                     schema_loaded=_migrations.carries_fresh_secrets(step_record.declared_job(ctx, 'migrate-pre') or {}))
    return out


def rollout_step(component):
    def run(ctx, progress):
        waiting = waiting_for_pre(ctx)
        if waiting is not None:
            return waiting
        step_record.record_line_run(ctx)  # BEFORE any pod of the new version can start
        out = apply_component(ctx, component, progress)
        if component == ROLLOUT[-1]:
            record_phase(ctx, 'rollout')
        return out
    run.__name__ = 'step_' + component
    return run


def old_pods(ctx):
    """['pod (image)'] of the pods of the web, streaming and Sidekiq Deployments whose containers run another
    image than the plan's (an old ReplicaSet's pod, terminating ones included: they may still serve requests)."""
    ns = ctx.v['config_namespace']
    found = []
    for component in ROLLOUT:
        for obj in ctx.manifests[component]:
            if obj['kind'] != 'Deployment':
                continue
            want = dict((c['name'], c['image']) for c in obj['spec']['template']['spec']['containers'])
            selector = ','.join('%s=%s' % item for item in sorted(obj['spec']['selector']['matchLabels'].items()))
            status, body = ctx.client.request('GET', '/api/v1/namespaces/%s/pods' % ns, {'labelSelector': selector})
            if status != 200:
                raise KubeError('listing the pods of %s: HTTP %s' % (obj['metadata']['name'], status), status=status)
            for pod in (body or {}).get('items') or []:
                other = [c['image'] for c in (pod.get('spec') or {}).get('containers') or []
                         if c.get('name') in want and c.get('image') != want[c['name']]]
                if other:
                    found.append('%s (%s)' % (pod['metadata']['name'], other[0]))
    return sorted(found)


def gate_problems(ctx, progress=None, wait=0):
    """[ConfigError] of the point of no return: a pod of the old version still there (waited for up to
    ``wait`` seconds: pods of the old ReplicaSets end after their grace period) or no recent backup."""
    deadline = time.monotonic() + wait
    shown = None
    while True:
        pods = old_pods(ctx)
        if not pods or time.monotonic() >= deadline:
            break
        if progress is not None and len(pods) != shown:
            shown = len(pods)
            progress('waiting for %d pod(s) of the old version to end' % shown)
        time.sleep(GATE_POLL)
    errors = []
    if pods:
        errors.append(ConfigError('config_mastodon_version', 'pods of the old version are still running (%s): the '
                                  'post-deployment migrations would remove what they use' % ', '.join(pods[:5])))
    return errors + list(backup_check(ctx))


def post_started(ctx):
    """'Job <name> running ...' or 'Job <name> complete' when the post-deployment Job of this plan exists (the
    point of no return was passed by an earlier run: a re-run re-attaches without the gate), else None. A failed
    Job is None: its replacement goes through the gate again."""
    job = step_record.live_job(ctx, 'migrate-post')
    if job is None:
        return None
    state = step_record.job_state(job)[0]
    if state == 'failed':
        return None
    return step_record.job_running(ctx, 'migrate-post') if state == 'pending' else \
        'Job %s complete' % job['metadata']['name']


def step_gate(ctx, progress):
    v = ctx.v
    waiting = waiting_for_pre(ctx)  # nothing rolled out yet: nothing to hold or to pass
    if waiting is not None:
        return waiting
    if v['migrations_post'] == 'hold':
        record_phase(ctx, 'rollout', post_migrations='held')
        return {'changed': False, 'msg': 'migrations_post is hold: the post-deployment migrations wait; run them '
                'later with: %s' % POST_LATER}
    if ctx.check_mode:
        return {'changed': False, 'msg': 'check mode: the point of no return is checked when the rollout happened'}
    started = post_started(ctx)
    if started is not None:
        return {'changed': False, 'msg': 'the post-deployment migrations were started by an earlier run (%s): the '
                'point of no return is behind; re-attaching' % started}
    errors = gate_problems(ctx, progress, wait=max(v['web_wait_timeout'], v['streaming_wait_timeout'],
                                                   v['sidekiq_wait_timeout']))
    if errors:
        raise PlanError(errors, 'the point of no return is not passed: the post-deployment migrations did not run')
    return {'changed': False, 'msg': 'every pod runs %s: the post-deployment migrations may run. %s'
            % (ctx.data['version'], ctx.restore_message or '')}


def step_migrate_post(ctx, progress):
    waiting = waiting_for_pre(ctx)
    if waiting is not None:
        return waiting
    if ctx.v['migrations_post'] == 'hold':
        return {'changed': False, 'msg': 'post-deployment migrations held (migrations_post: hold); run them later '
                'with: %s' % POST_LATER}
    if not ctx.check_mode:
        if post_started(ctx) is None:
            errors = gate_problems(ctx)  # the gate again: this step may run alone (--start-at-task)
            if errors:
                raise PlanError(errors, 'the point of no return is not passed: the post-deployment migrations did '
                                'not run')
    out = apply_component(ctx, 'migrate-post', progress)
    if out.get('running_jobs'):
        # post_migrations running: the guard counts them as run (they may have removed what the old version needs)
        record_phase(ctx, 'rollout', post_migrations='running', migrations_running='post',
                     running_job=out['running_jobs'][0]['name'])
        return left_running(out, [])
    record_phase(ctx, 'post', post_migrations='done', migrations_running=None, running_job=None,
                 schema_version=None if ctx.check_mode else step_record.schema_version_of(ctx, 'migrate-post'))
    return out


# ------------------------------------------------------------------ the upgrade with downtime (_deploy/downtime.py)
def step_stop(ctx, progress):
    """config_upgrade_with_downtime: web, streaming and Sidekiq scaled to 0 and their pods gone before the migration
    Job (after the backup gate: the Job runs the post-deployment migrations too); otherwise nothing."""
    if not downtime.active(ctx.v):
        return {'changed': False}
    out = downtime.stop(ctx.client, ctx.v, ctx.manifests, progress, ctx.check_mode,
                        backup_check=lambda: backup_check(ctx))
    if out.get('errors'):
        raise PlanError(out['errors'], 'the migrations with downtime pass the point of no return: nothing was stopped')
    return out


def with_downtime_record(step):
    """migrate-pre: in the upgrade with downtime its Job ran the post-deployment migrations too: the record says so
    (the upgrade guard must never take them for pending)."""
    def run(ctx, progress):
        out = step(ctx, progress)
        if downtime.active(ctx.v) and not ctx.check_mode:
            job = downtime.downtime_job(ctx.manifests)
            if job is not None and downtime.job_succeeded(ctx.client, ctx.v['config_namespace'], job):
                record_phase(ctx, 'pre', post_migrations='done')
        return out
    run.__name__ = step.__name__
    return run


def unless_downtime(step):
    """gate and migrate-post: with config_upgrade_with_downtime every migration ran in migrate-pre's Job."""
    def run(ctx, progress):
        if downtime.active(ctx.v):
            return {'changed': False, 'msg': '%s: every migration ran in the migration Job with downtime, before the '
                    'rollout: nothing to do here' % downtime.VARIABLE}
        return step(ctx, progress)
    run.__name__ = step.__name__
    return run


STEPS = {'config': step_config, 'stop': step_stop, 'migrate-pre': with_downtime_record(step_migrate_pre),
         'web': rollout_step('web'), 'streaming': rollout_step('streaming'), 'sidekiq': rollout_step('sidekiq'),
         'gate': unless_downtime(step_gate), 'migrate-post': unless_downtime(step_migrate_post)}


def run_step(name, ctx, progress=None):
    """The result of one step: {changed, step, objects, pruned, summary, diff?} or {changed, msg}."""
    if not ctx.v['config_kubernetes']:  # files only (config_files_hosts): the cluster is not this deploy's
        return {'changed': False, 'step': name, 'msg': 'config_kubernetes is false: nothing to apply'}
    if name == 'config':
        lease_first_install(ctx)
    lease_renew(ctx)
    renewer = lease_renewer(ctx)
    if renewer is None:
        out = STEPS[name](ctx, progress)
    else:
        with renewer:
            out = STEPS[name](ctx, progress)
        try:
            renewer.check()
        except lock.LockError as exc:
            raise _lock_refusal(exc)
    out['step'] = name
    return out


def finish(ctx, outcome):
    """Record the outcome (ok becomes running when a migration Job was left running) and release the lease (the
    action then removes the handoff directory). Recording a failure is best effort: a record that cannot be
    written must not hide the failure itself."""
    try:
        record_phase(ctx, 'finish', outcome=outcome)
    except KubeError:
        if outcome != 'failed':
            raise
    finally:
        lease_release(ctx)
