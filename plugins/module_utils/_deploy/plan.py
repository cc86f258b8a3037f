# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy: the plan (every check, nothing written), then the apply of each component in order.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import copy

from ansible_collections.fediops.mastodon.plugins.module_utils import _manifests
from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as mconfig
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.applier import ComponentApplier, summary_text
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.endpoints import do_endpoints, explicit_endpoints
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards import (
    backup_secret, fresh_secrets, kept_plan, local_domain_guard, reference_problems)
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.model import build_model, dotenv_text, environment
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.preflight import in_cluster_preflight, tls_preflight
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.rules import cross_checks
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.state import (
    catching, concurrently, read_references, read_state)
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.variables import MAX_OBJECT_BYTES, check_variables
from ansible_collections.fediops.mastodon.plugins.module_utils._k8s_apply import Applier, KubeError
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
                 check_mode=False, diff=False, staged=None, now=None):
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
        self.v = None
        self.appliers = []
        self.warnings = []
        self.backup = None
        self.env = None
        self.generated = []
        self.state = {}
        self.kept = {}

    def check_inputs(self):
        v, errors = check_variables(self.raw_vars, self.specs)
        for name in set(e.key for e in errors):
            role = name.split('_', 1)[0]
            spec = self.specs.get(role, {}).get(name)
            if spec is not None:  # a wrong type: go on with the default, so every other problem is found too
                v[name] = copy.deepcopy(spec.get('default'))
        more, groups = cross_checks(v, self.now)
        errors += more
        if errors:
            raise PlanError(errors, 'invalid variables')
        self.v, self.groups = v, groups
        return v

    def in_cluster_preflight(self):
        """The preflight from the namespace: it needs the namespace, and it writes a Job, so check mode skips it."""
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
        v = self.check_inputs()
        # The DigitalOcean look-ups and the cluster's state are independent: read them at the same time.
        lookups = {}
        if v['config_database_source'] == 'digitalocean':
            lookups['endpoints'] = lambda: do_endpoints(v, lambda: self.do_client(v), self.kube_server())
        if v['config_kubernetes']:
            lookups['state'] = lambda: read_state(self.kube_client(), v)
        found = concurrently(lookups)
        self.endpoints = found.get('endpoints') or explicit_endpoints(v)
        self.warnings += self.endpoints.get('warnings') or []
        if v['config_kubernetes']:
            self.state = found['state']
            local_domain_guard(v, self.state)
            if self.state.get('namespace') is not None:
                problems, warnings = reference_problems(read_references(self.kube_client(), v), v['config_namespace'])
                self.warnings += warnings
                if problems:
                    raise PlanError(problems, 'objects the deploy refers to are missing')
        self.kept = kept_plan(v, self.state)
        known, self.backup = self.kept['known'], self.kept['backup']
        self.warnings += self.kept['warnings']
        staged = dict(self.staged.get('kept') or {})
        staged.update(known)
        version = mconfig.parse_version(v['config_mastodon_version'], v['config_allow_unsupported_version'])[0]
        self.env, self.generated, warnings = environment(v, self.endpoints, staged, version)
        self.warnings += warnings
        unasked = [k for k in self.generated if k not in self.kept['requested']]
        if unasked and self.state.get('instance'):
            raise PlanError([ConfigError('config_generate_secrets', 'would generate %s for an existing instance'
                                         % ', '.join(unasked))], 'the kept secrets are incomplete')
        self.model = build_model(v, self.groups, self.endpoints, self.env, self.env, version)
        self.model['fresh_secrets'] = fresh_secrets(self.generated, self.staged.get('kept'), known, self.kept['requested'])
        self.model['encryption_keys_replaced'] = self.kept['encryption_keys_replaced']
        self.model['kept_secrets_annotations'] = self.kept['annotations']
        problem = _manifests.media_storage_problem(self.model)
        if problem:
            raise PlanError([ConfigError('config_media_volume_claim', problem.split(': ', 1)[1])], 'uploads would be lost')
        try:
            self.manifests = _manifests.build(self.model)
        except ConfigError as exc:
            raise PlanError([exc], 'the manifests cannot be built')
        except ValueError as exc:  # _migrations.MigrationsError: '<variable>: <reason>'
            variable, dummy, reason = str(exc).partition(': ')
            raise PlanError([ConfigError(variable, reason)], 'the manifests cannot be built')
        too_large = object_size_problems(self.manifests, v)
        if too_large:
            raise PlanError(too_large, 'objects larger than Kubernetes accepts')
        if v['config_tls_preflight'] and v['config_tls_preflight_in_cluster'] and v['config_kubernetes']:
            self.in_cluster_preflight()
        elif v['config_tls_preflight'] and self.check_endpoint is not None:
            problems = tls_preflight(self.endpoints, self.check_endpoint, v['config_tls_preflight_hostaddr'],
                                     v['config_tls_preflight_timeout'], v['config_redis_ca_pem'])
            if problems:
                raise PlanError(problems, 'TLS preflight failed')
        if v['config_kubernetes']:
            self.dry_run()
        return self

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
            self.appliers.append(ComponentApplier(
                client, component, v['config_namespace'], '%s-set-%s' % (v['config_name'], component),
                self.manifests.origins, new_namespace=namespace_missing, diff=self.diff,
                wait=v[wait_var] if wait_var else True, wait_timeout=v[timeout_var]))
        # Dry-runs change nothing, so the components are planned at the same time (the apply keeps the order).
        outcomes = concurrently(dict((a.component, catching(PlanError, a.plan, self.manifests[a.component]))
                                     for a in self.appliers))
        for applier in self.appliers:
            if isinstance(outcomes[applier.component], PlanError):
                errors += outcomes[applier.component].errors
        if errors:
            raise PlanError(errors, 'the API server rejects objects (server-side dry-run)')

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
        for applier in self.appliers:
            try:
                out[applier.component] = self.brief(applier.apply())
            except KubeError as exc:
                done = ', '.join(a.component for a in self.appliers if a.component in out) or 'nothing'
                raise KubeError('%s: %s (components done: %s; later ones not started)' % (applier.component, exc.msg, done),
                                status=exc.status)
        changed = any(r['changed'] for r in out.values()) or bool(self.backup)
        diffs = None
        if self.diff:
            diffs = [{'prepared': summary_text(self.summaries(), self.restarts())}]
            for applier in self.appliers:
                diffs += applier.diffs
        return self.result(changed, out, diffs)

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
