# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy: the plan (every check, nothing written), then the apply of each component in order.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import copy
import datetime

from ansible_collections.fediops.mastodon.plugins.module_utils import _manifests
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import downtime
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.applier import ComponentApplier, summary_text
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.endpoints import do_endpoints, explicit_endpoints
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards import (
    backup_secret, first_install_job, fresh_secrets, kept_plan, local_domain_guard, reference_problems)
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards_upgrade import check_upgrade_path
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.record import RecordKeeper, keeper_failed
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.model import build_model, dotenv_text, environment
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.preflight import in_cluster_preflight, tls_preflight
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.rules import cross_checks
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.state import (
    catching, concurrently, read_references, read_state)
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.variables import MAX_OBJECT_BYTES, check_variables
from ansible_collections.fediops.mastodon.plugins.module_utils import _migrations
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanError
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier, KubeError, job_log
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

COMPONENTS = _manifests.COMPONENTS


WAITS = {'config': (None, 'config_apply_timeout'), 'migrate-pre': (None, 'migrations_wait_timeout'),
         'migrate-post': (None, 'migrations_wait_timeout'), 'web': ('web_wait', 'web_wait_timeout'),
         'streaming': ('streaming_wait', 'streaming_wait_timeout'), 'sidekiq': ('sidekiq_wait', 'sidekiq_wait_timeout')}

# What the plan checks, in order (the action's result lists it; docs/docsite/rst/guide_deploy.rst explains it).
PLAN_STEPS = (
    'variables: every role variable against its argument spec (strict types, choices, required, unknown <role>_* '
    'variables with did-you-mean), and its size (1 MiB per object, 128 KiB per environment string)',
    'cross-role rules: names, hosts (CDN without scheme), versions, resource quantities, strategy, nodeSelector, '
    'tolerations, HPA bounds, exposure, sidekiq groups (keys, queues with did-you-mean, scheduler in exactly one '
    'replica, unique names, every queue served), the given CA (X.509, CA:TRUE, validity, no private key)',
    'endpoints: DigitalOcean look-ups (cluster, pool, users, CA) or the explicit variables',
    'cluster state: namespace, kept secrets, env Secret/ConfigMap, web Deployment, ApplySet marker (GETs only)',
    'guards: kept secrets (refuse when the instance exists without them or config_secrets differs from them; a '
    'rotation acts once), LOCAL_DOMAIN change, objects referred to (a missing uploads claim refused, a missing pull '
    'Secret or IngressClass warned)',
    "environment: Mastodon's schema for the version, kept secrets generated once, split per component",
    'manifests: every object of every component rendered; uploads storage',
    'TLS preflight: PostgreSQL direct and pool against the CA, Redis against the system store',
    'server-side dry-run of every object of the selected components, rejections mapped to variables',
)


# The variables each stage reads first: a problem in one of them skips that stage (its own checks would only
# repeat it), the others still run.
ENDPOINT_VARIABLES = frozenset((
    'config_database_source', 'config_do_database_cluster', 'config_do_redis_cluster', 'config_do_pool',
    'config_do_use_pool', 'config_do_private_network', 'config_do_api_token', 'config_do_api_base_url',
    'config_do_ca_path', 'config_do_validate_certs', 'config_do_kubernetes_cluster_id', 'config_db_host',
    'config_db_port', 'config_db_name', 'config_db_user', 'config_db_password', 'config_db_pgbouncer',
    'config_db_direct_host', 'config_db_direct_port', 'config_db_direct_name', 'config_db_ca_pem',
    'config_redis_url'))
STATE_VARIABLES = frozenset(('config_name', 'config_namespace', 'config_kubernetes'))
# A variable at fault whose default the later stages would refuse again (an empty LOCAL_DOMAIN is "required"):
# a reserved name stands in for it (RFC 2606 .invalid), so each problem is reported once, under its variable.
PLACEHOLDERS = {'config_local_domain': 'unresolved.invalid'}
# Stand-in endpoints after a failed look-up: reserved names (RFC 2606 .invalid), never connected to (the TLS
# preflight skips them) and never applied (the plan is refused).
UNRESOLVED_ENDPOINTS = {
    'db': {'host': 'database.unresolved.invalid', 'port': 25061, 'name': 'mastodon', 'user': 'mastodon',
           'password': 'unresolved', 'pgbouncer': False, 'direct_host': 'database.unresolved.invalid',
           'direct_port': 25060, 'direct_name': 'mastodon', 'direct_user': 'mastodon', 'direct_password': 'unresolved'},
    'redis_url': 'rediss://default:unresolved@redis.unresolved.invalid:25061', 'ca_pem': ''}


def stage(func, *args):
    """[ConfigError] of one stage of the plan (its PlanError's list), or its result when it passed."""
    try:
        out = func(*args)
    except PlanError as exc:
        return exc.errors
    return [] if out is None else out


def _largest_contributor(v, data, fallback):
    """The variable among those that fill an env object whose keys weigh most in `data`."""
    weights = []
    for variable in ('config_env', 'config_extra_env', 'config_secrets'):
        given = v.get(variable) or {}
        weights.append((sum(len(k) + len(str(data[k])) for k in given if k in data), variable))
    weight, variable = max(weights)
    return variable if weight else fallback


def object_size_problems(manifests, v=None):
    """[ConfigError] for each Secret or ConfigMap whose data exceed what Kubernetes accepts (1 MiB), naming the
    variable that weighs most in it (values from several variables can add up past the bound of each one)."""
    errors = []
    for objects in manifests.values():
        for obj in objects:
            if obj['kind'] not in ('Secret', 'ConfigMap'):
                continue
            data = obj.get('data') or {}
            # Secret data is base64 here: 4 characters for 3 bytes
            size = sum(len(k) + (len(val) * 3 // 4 if obj['kind'] == 'Secret' else len(val.encode('utf-8')))
                       for k, val in data.items())
            if size > MAX_OBJECT_BYTES:
                variable = _manifests.origin_of(manifests.origins, obj['kind'], obj['metadata']['name'], 'data') or 'config_env'
                variable = _largest_contributor(v or {}, data, variable)
                errors.append(ConfigError(variable, '%s %s would hold %d bytes; Kubernetes accepts at most %d in one '
                                                    'Secret or ConfigMap' % (obj['kind'], obj['metadata']['name'], size,
                                                                             MAX_OBJECT_BYTES)))
    return errors


class Deploy(object):
    """One mastodon_deploy call: plan(), then apply() unless check mode."""

    def __init__(self, raw_vars, specs, components, kube_client=None, do_client=None, check_endpoint=None,
                 check_mode=False, diff=False, staged=None, now=None, progress=None):
        self.raw_vars = raw_vars
        self.specs = specs
        self.components = [c for c in COMPONENTS if c in components]
        self.kube_client = kube_client
        self.do_client = do_client
        self.check_endpoint = check_endpoint
        self.check_mode = check_mode
        self.diff = diff
        self.staged = staged or {}
        self.now = now
        self.progress = progress  # progress(text): '<component>: <what its wait sees>' while applying
        self.v = None
        self.appliers = []
        self.warnings = []
        self.backup = None
        self.env = None
        self.generated = []
        self.state = {}
        self.manifests = None
        self.model = None
        self.groups = None
        self.endpoints = None
        self.endpoints_known = False
        # What kept_plan decides (the guards' answer); empty when it refused, so the later stages still run
        self.kept = {'known': {}, 'backup': None, 'warnings': [], 'requested': [], 'encryption_keys_replaced': False,
                     'annotations': {}, 'rotated': [], 'backup_name': None}

    def check_inputs(self, found=None):
        """The typed variables. Without ``found``: PlanError on any problem. With a list: the problems are added
        to it and each variable at fault is set to its default, so that the later stages still check the rest."""
        v, errors = check_variables(self.raw_vars, self.specs)
        self.use_defaults(v, errors)  # a wrong type: the rules below need a value of the right one
        more, groups = cross_checks(v, self.now)
        errors += more
        if errors and found is None:
            raise PlanError(errors, 'invalid variables')
        if more:
            self.use_defaults(v, more)
            if 'sidekiq_workers' in set(e.key for e in more):
                groups = cross_checks(v, self.now)[1]
        if found is not None:
            found += errors
        self.v, self.groups = v, groups
        return v

    def use_defaults(self, v, errors):
        for name in set(e.key for e in errors):
            spec = self.specs.get(name.split('_', 1)[0], {}).get(name)
            if name in PLACEHOLDERS:
                v[name] = PLACEHOLDERS[name]
            elif spec is not None:
                v[name] = copy.deepcopy(spec.get('default'))

    def in_cluster_preflight(self):
        """The preflight from the namespace: it needs the namespace, and it writes a Job (the plan's one write,
        short-lived and always deleted), so check mode skips it."""
        if self.check_mode:
            self.warnings.append('the in-cluster TLS preflight creates a Job: skipped in check mode')
            return
        if self.state.get('namespace') is None:
            raise PlanError([ConfigError('config_tls_preflight_in_cluster', 'namespace %s does not exist yet: the '
                                         'in-cluster check runs a Job in it; create the namespace first'
                                         % self.v['config_namespace'])], 'TLS preflight failed')
        problems = in_cluster_preflight(self.kube_client(), self.v, dict(self.model, tls_endpoints=self.endpoints))
        if problems:
            raise PlanError(problems, 'TLS preflight failed')

    def kube_server(self):
        """The API server URL of the kubeconfig (a DOKS URL names the cluster's id), when the deploy uses one."""
        return getattr(self.kube_client(), 'host', None) if self.v['config_kubernetes'] else None

    def plan(self):
        """Every stage of the plan; a stage that does not depend on a failed one still runs, and one PlanError
        lists every problem found (each naming its variable). Nothing is written before it passed, except the
        in-cluster TLS check's short-lived Job, which runs only when every other check passed."""
        problems = []
        v = self.check_inputs(problems)
        faulty = set(e.key for e in problems)
        # The DigitalOcean look-ups and the cluster's state are independent: read them at the same time.
        lookups = {}
        if v['config_database_source'] == 'digitalocean' and not faulty & ENDPOINT_VARIABLES:
            lookups['endpoints'] = catching((PlanError, DigitalOceanError), self.do_endpoints, v)
        if v['config_kubernetes'] and not faulty & STATE_VARIABLES:
            lookups['state'] = lambda: read_state(self.kube_client(), v)
        found = concurrently(lookups)
        endpoints = found.get('endpoints')
        unreachable = None
        if isinstance(endpoints, PlanError):
            problems += endpoints.errors
            endpoints = None
        elif isinstance(endpoints, DigitalOceanError):  # the API said no (token, network): reported below
            unreachable, endpoints = endpoints, None
        if endpoints is None and v['config_database_source'] != 'digitalocean' and not faulty & ENDPOINT_VARIABLES:
            endpoints = explicit_endpoints(v)
        # Without real endpoints (a failed look-up, a faulty variable), stand-ins let the environment, manifests
        # and dry-run stages check the rest; the plan is refused in the end anyway.
        self.endpoints_known = endpoints is not None
        self.endpoints = endpoints or UNRESOLVED_ENDPOINTS
        self.warnings += self.endpoints.get('warnings') or []
        self.state = found.get('state') or {}
        if self.state and 'config_local_domain' not in faulty:
            problems += stage(local_domain_guard, v, self.state)
            if self.state.get('namespace') is not None:
                missing, warnings = reference_problems(read_references(self.kube_client(), v), v['config_namespace'])
                self.warnings += warnings
                problems += missing
        try:
            self.warnings += check_upgrade_path(v, self.state.get('record'))
        except PlanError as exc:
            problems += exc.errors
        kept = stage(kept_plan, v, self.state)
        if isinstance(kept, dict):
            self.kept = kept
            self.warnings += kept['warnings']
        else:
            problems += kept
        known, self.backup = self.kept['known'], self.kept['backup']
        staged = dict(self.staged.get('kept') or {})
        staged.update(known)
        version = mconfig.parse_version(v['config_mastodon_version'], v['config_allow_unsupported_version'])[0]
        env = self.environment(v, staged, version, problems)
        unasked = [k for k in self.generated if k not in self.kept['requested']]
        if env is not None and unasked and self.state.get('instance'):
            problems.append(ConfigError('config_generate_secrets', 'would generate %s for an existing instance'
                                        % ', '.join(unasked)))
        if env is not None:
            self.model = build_model(v, self.groups, self.endpoints, self.env, self.env, version)
            self.model['fresh_secrets'] = (fresh_secrets(self.generated, self.staged.get('kept'), known,
                                                         self.kept['requested'])
                                           or first_install_job(self.state.get('record'), self.model['version']))
            self.model['encryption_keys_replaced'] = self.kept['encryption_keys_replaced']
            self.model['kept_secrets_annotations'] = self.kept['annotations']
            problem = _manifests.media_storage_problem(self.model)
            if problem:
                problems.append(ConfigError('config_media_volume_claim', problem.split(': ', 1)[1]))
            problems += self.build_manifests()
            if self.manifests is not None:
                problems += object_size_problems(self.manifests, v)
        if v['config_tls_preflight'] and self.endpoints_known:
            if v['config_tls_preflight_in_cluster'] and v['config_kubernetes']:
                if not problems and self.manifests is not None:
                    problems += stage(self.in_cluster_preflight)
            elif self.check_endpoint is not None:
                problems += tls_preflight(self.endpoints, self.check_endpoint, v['config_tls_preflight_hostaddr'],
                                          v['config_tls_preflight_timeout'], v['config_redis_ca_pem'])
        if v['config_kubernetes'] and self.manifests is not None and not faulty & STATE_VARIABLES:
            try:
                problems += stage(self.dry_run)
            except KubeError:
                if not problems:
                    raise
                # e.g. an API group the cluster does not serve, for objects a variable at fault asked for (the
                # plan stands in its default for it): the problems found are the answer.
        if problems and unreachable is not None:
            problems.append(ConfigError('config_do_database_cluster', 'DigitalOcean look-up failed: %s' % unreachable))
        if problems:
            raise PlanError(problems, 'the plan found problems')
        if unreachable is not None:
            raise unreachable
        return self

    def do_endpoints(self, v):
        return do_endpoints(v, lambda: self.do_client(v), self.kube_server())

    def environment(self, v, staged, version, problems):
        """Mastodon's environment; with bad keys in config_env, they are reported and left out so that the
        manifests and the dry-run still check the rest (None when even that fails)."""
        try:
            self.env, self.generated, warnings = environment(v, self.endpoints, staged, version)
        except PlanError as exc:
            problems += exc.errors
            bad = set(e.reason.split(':', 1)[0] for e in exc.errors)
            lenient = dict(v, config_env=dict((k, val) for k, val in v['config_env'].items() if k not in bad))
            try:
                self.env, self.generated, warnings = environment(lenient, self.endpoints, staged, version)
            except PlanError:
                return None
        self.warnings += warnings
        return self.env

    def build_manifests(self):
        try:
            self.manifests = _manifests.build(self.model)
        except ConfigError as exc:
            return [exc]
        except ValueError as exc:  # _migrations.MigrationsError: '<variable>: <reason>'
            variable, dummy, reason = str(exc).partition(': ')
            return [ConfigError(variable, reason)]
        return []

    def dry_run(self):
        v, client = self.v, self.kube_client()
        namespace_missing = self.state.get('namespace') is None
        if namespace_missing and not v['config_manage_namespace']:
            raise PlanError([ConfigError('config_namespace', 'namespace %s does not exist: create it (with '
                                         'docs/rbac/deployer.yml) or set config_manage_namespace: true'
                                         % v['config_namespace'])], 'the namespace is missing')
        if namespace_missing and 'config' not in self.components:
            raise PlanError([ConfigError('config_namespace', 'namespace %s does not exist: run the config role (or '
                                         'playbooks/deploy.yml) first' % v['config_namespace'])],
                            'the namespace is missing')
        errors = []
        for component in self.components:
            wait_var, timeout_var = WAITS[component]
            # A migration Job still running at migrations_wait_timeout is left running (never killed), its log read
            # for the migration it is at.
            jobs = dict(detach_running_jobs=True, describe_job_log=_migrations.describe_progress) \
                if component in ('migrate-pre', 'migrate-post') else {}
            self.appliers.append(ComponentApplier(
                client, component, v['config_namespace'], '%s-set-%s' % (v['config_name'], component),
                self.manifests.origins, new_namespace=namespace_missing, diff=self.diff,
                wait=v[wait_var] if wait_var else True, wait_timeout=v[timeout_var],
                progress=self._progress_of(component), **jobs))
        # Dry-runs change nothing, so the components are planned at the same time (the apply keeps the order).
        outcomes = concurrently(dict((a.component, catching(PlanError, a.plan, self.manifests[a.component]))
                                     for a in self.appliers))
        for applier in self.appliers:
            if isinstance(outcomes[applier.component], PlanError):
                errors += outcomes[applier.component].errors
        if errors:
            raise PlanError(errors, 'the API server rejects objects (server-side dry-run)')

    def _progress_of(self, component):
        if self.progress is None:
            return None
        return lambda text: self.progress('%s: %s' % (component, text))

    def summaries(self):
        return [(a.component, a.summary()) for a in self.appliers]

    def restarts(self):
        """{component: [Deployment/name whose pods the deploy replaces]} (see ComponentApplier.restarts)."""
        return dict((a.component, a.restarts()) for a in self.appliers)

    def check_result(self):
        changed = any(a.plan_result['changed'] for a in self.appliers) or bool(self.backup)
        diffs = [{'prepared': summary_text(self.summaries(), self.restarts())}]
        for applier in self.appliers:
            diffs += applier.plan_result.get('diff') or []
        return self.result(changed, dict((a.component, self.brief(a.plan_result)) for a in self.appliers),
                           diffs if self.diff else None)

    def apply(self):
        client = self.kube_client()
        out = {}
        if self.backup:
            backup = backup_secret(self.v['config_name'], self.v['config_namespace'], self.model['labels'], self.backup,
                                   self.kept['backup_name'])
            saver = Applier(client, namespace=self.v['config_namespace'])
            saver.present([backup])
        keeper = RecordKeeper(client, self.v['config_namespace'], self.v['config_name'], self.model['labels'],
                              self.state.get('record'), self.model['version'],
                              {'web': self.model['image'], 'streaming': self.model['streaming_image']},
                              self._utcnow, job_log=lambda job: job_log(client, job))
        running = None
        for index, applier in enumerate(self.appliers):
            try:
                if applier.component == 'migrate-pre' and downtime.active(self.v):
                    # config_upgrade_with_downtime: nothing of the old version runs while every migration does
                    downtime.stop(client, self.v, self.manifests, self._progress_of('migrate-pre'))
                keeper.before(applier.component)
                result = applier.apply()
                keeper.after(applier.component, result, self.manifests[applier.component])
            except KubeError as exc:
                done = ', '.join(a.component for a in self.appliers if a.component in out) or 'nothing'
                keeper_failed(keeper)
                raise KubeError('%s: %s (components done: %s; later ones not started)' % (applier.component, exc.msg, done),
                                status=exc.status)
            out[applier.component] = self.brief(result)
            if result.get('running_jobs'):
                # Never past a migration still running: the new version's pods need the pre-deployment migrations,
                # and the post-deployment ones are the last step anyway. Not a failure: re-run later to re-attach.
                out[applier.component]['running_jobs'] = result['running_jobs']
                later = [a.component for a in self.appliers[index + 1:]]
                running = '%s: %s. %s; run the deploy again later: it re-attaches to the Job and goes on once it has ' \
                          'finished' % (applier.component, '; '.join(j['msg'] for j in result['running_jobs']),
                                        'Not started: %s' % ', '.join(later) if later else 'Nothing else was to be done')
                self.warnings.append(running)
                break
        keeper.finish('running' if running else 'ok')
        changed = any(r['changed'] for r in out.values()) or bool(self.backup)
        diffs = None
        if self.diff:
            diffs = [{'prepared': summary_text(self.summaries(), self.restarts())}]
            for applier in self.appliers:
                diffs += applier.diffs
        out = self.result(changed, out, diffs)
        if running:
            out.update(migrations_running=True, msg=running)
        return out

    def _utcnow(self):
        return self.now or datetime.datetime.now(datetime.timezone.utc)

    @staticmethod
    def brief(result):
        return {'changed': result['changed'], 'pruned': result['pruned'],
                'objects': [dict((k, r[k]) for k in ('kind', 'namespace', 'name', 'action')) for r in result['objects']]}

    def result(self, changed, components, diffs):
        out = {'changed': changed, 'components': components, 'summary': summary_text(self.summaries(), self.restarts()),
               'generated_secrets': sorted(self.generated), 'warnings': self.warnings,
               'plan': list(PLAN_STEPS), 'name': self.v['config_name'], 'namespace': self.v['config_namespace'],
               'version': self.model['version'], 'config_out': self.config_out()}
        if self.backup:
            out['kept_secrets_backup'] = self.kept['backup_name']
        if diffs is not None:
            out['diff'] = diffs
        return out

    def config_out(self):
        """What playbooks/tootctl.yml needs to run a Rails container like web's (image, env, CA, security)."""
        web = [o for o in self.manifests['web'] if o['kind'] == 'Deployment'][0]
        spec = web['spec']['template']['spec']
        container = spec['containers'][0]
        return {'name': self.model['name'], 'namespace': self.model['namespace'], 'version': self.model['version'],
                'image': self.model['image'], 'image_pull_policy': container['imagePullPolicy'],
                'labels': self.model['labels'],
                'pod': {'securityContext': spec['securityContext'], 'imagePullSecrets': spec['imagePullSecrets'],
                        'volumes': spec['volumes'], 'volumeMounts': container['volumeMounts'],
                        'envFrom': container['envFrom'], 'containerSecurityContext': container['securityContext'],
                        'serviceAccountName': spec['serviceAccountName'],
                        'annotations': dict(self.v['config_pod_annotations'])}}

    def files(self):
        """{name: text} of the files for config_files_hosts: .env.production and the CA."""
        out = {'env.production': dotenv_text(self.env, self.v['config_files_ca_dest'])}
        if self.endpoints['ca_pem']:
            out['ca.crt'] = self.endpoints['ca_pem']
        return out
