# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""fediops.mastodon.mastodon_deploy: plan, then apply, on the controller (thin: the logic is in
plugins/module_utils/_deploy/, mapped in docs/dev/ARCHITECTURE.md)."""

from __future__ import annotations

import json
import os

import yaml

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import plan, rollback, steps, variables
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import PlanError
from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.guards import KEPT_KEYS
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError
from ansible_collections.fediops.mastodon.plugins.module_utils._tls_check import check_endpoint
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import (
    DigitalOceanClient, DigitalOceanError, digitalocean_argument_spec)
from ansible_collections.fediops.mastodon.plugins.module_utils._kube import KubeClient, KubeError, kube_argument_spec

ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'roles')


def argument_spec():
    spec = kube_argument_spec()
    spec.update(dict((k, v) for k, v in digitalocean_argument_spec().items() if k != 'validate_certs'))
    spec.update(
        components=dict(type='list', elements='str', choices=list(plan.COMPONENTS), default=list(plan.COMPONENTS)),
        stage_files=dict(type='bool', default=False),
        staged_dir=dict(type='path'),
        step=dict(type='str', choices=['all', 'plan'] + list(steps.STEP_ORDER) + ['rollback'], default='all'),
        outcome=dict(type='str', choices=['ok', 'failed'], default='ok'),
    )
    return spec


FACT = 'mastodon_deploy_plan'


def fast_yaml(text):
    """The roles' argument specs (our own files: plain YAML), parsed with libyaml when present: every task of the
    deploy reads them."""
    return yaml.load(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))  # nosec: a safe loader


_ROLE_SPECS = {}


def role_specs():
    """The roles' argument specs, parsed once per process (never changed after)."""
    if not _ROLE_SPECS:
        _ROLE_SPECS.update(variables.load_role_specs(ROLES_DIR, fast_yaml))
    return _ROLE_SPECS


# Ansible imports an action plugin in its main process and forks a worker for each task: parsed here, the specs
# are inherited by every task of the deploy instead of being parsed again by each.
role_specs()


def plan_fact(task_vars):
    """The fact set by a plan task earlier in the play ({path, steps, version, summary}), or None."""
    task_vars = task_vars or {}
    return (task_vars.get('ansible_facts') or {}).get(FACT) or task_vars.get(FACT) or None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validated = ArgumentSpecValidator(argument_spec()).validate(self._task.args)
        if validated.error_messages:
            raise AnsibleActionFail('mastodon_deploy: %s' % '; '.join(validated.error_messages))
        params = validated.validated_parameters
        for defaults in self._task.module_defaults or []:
            if isinstance(defaults, dict) and 'validate_certs' in (defaults.get('group/fediops.mastodon.digitalocean') or {}):
                # validate_certs of this module is the Kubernetes API's: a DigitalOcean default must not turn it off
                raise AnsibleActionFail('mastodon_deploy: validate_certs in the module_defaults of '
                                        'group/fediops.mastodon.digitalocean would apply to the Kubernetes API here; '
                                        'set config_do_validate_certs for DigitalOcean instead')
        if params['step'] == 'finish':  # needs no variable: the plan task's fact names its directory
            return self.finish(result, plan_fact(task_vars), params, self.kube_client_factory(params),
                               bool(self._task.check_mode))
        specs = role_specs()
        names = set(n for options in specs.values() for n in options)
        prefixes = tuple(role + '_' for role in specs)
        raw = {}
        for name, value in (task_vars or {}).items():
            if name in names:
                raw[name] = self._templar.template(value)
            elif name.startswith(prefixes) or variables.misspelt_role_variable(name, specs, names):
                raw[name] = None  # unknown: only its name is reported
        kube_client = self.kube_client_factory(params)

        def do_client(v):
            return DigitalOceanClient(token=v['config_do_api_token'] or params['api_token'],
                                      base_url=v['config_do_api_base_url'] or params['api_base_url'],
                                      timeout=params['timeout'], validate_certs=v['config_do_validate_certs'],
                                      ca_path=v['config_do_ca_path'] or params['ca_path'],
                                      max_retries=params['max_retries'], max_wait=params['max_wait'],
                                      user_agent='fediops.mastodon mastodon_deploy')

        step = params['step']
        if step == 'rollback':
            return self.run_rollback(result, raw, specs, kube_client, do_client)
        if step not in ('all', 'plan'):
            return self.run_step(result, step, raw, plan_fact(task_vars), params, specs, kube_client, do_client)
        staged = self.read_staged(params['staged_dir']) if params['staged_dir'] else None
        deploy = plan.Deploy(raw, specs, params['components'], kube_client=kube_client, do_client=do_client,
                             check_endpoint=check_endpoint, check_mode=bool(self._task.check_mode) or params['stage_files'],
                             diff=bool(self._task.diff), staged=staged,
                             # '<component>: <what the wait sees>', once per change (AWX shows it as it comes)
                             progress=lambda text: self._display.display(text, stderr=True))
        if step == 'plan':
            return self.run_plan(result, deploy, raw)
        try:
            deploy.plan()
            if staged is not None and staged['env'] != deploy.files()['env.production']:
                raise PlanError([ConfigError('config_env', 'the environment differs from the .env.production '
                                             'staged in %s' % params['staged_dir'])], 'staged files are stale')
            if params['stage_files']:
                out = deploy.check_result()
                out.pop('diff', None)
                out['changed'] = False
                out['staged_dir'] = self.stage(deploy)
            elif self._task.check_mode:
                out = deploy.check_result()
            else:
                out = deploy.apply()
        except PlanError as exc:
            result.update(failed=True, msg=exc.message(), errors=[str(e) for e in exc.errors], variables=exc.variables)
            return result
        except (KubeError, DigitalOceanError) as exc:
            result.update(failed=True, **exc.fail_kwargs())
            return result
        for warning in out.pop('warnings', []):
            self._display.warning(warning)
        result.update(out)
        return result

    @staticmethod
    def kube_client_factory(params):
        """A function making the KubeClient of the task's connection options on its first call."""
        clients = {}

        def kube_client():
            if 'kube' not in clients:
                clients['kube'] = KubeClient(kubeconfig=params['kubeconfig'], context=params['context'],
                                             host=params['host'], api_key=params['api_key'], ca_cert=params['ca_cert'],
                                             validate_certs=params['validate_certs'])
            return clients['kube']
        return kube_client

    @staticmethod
    def finish(result, fact, params, kube_client, check_mode=False):
        """step=finish: record the outcome, release the lease, remove the plan's directory."""
        if fact:
            try:
                steps.finish(steps.PlanContext.load(fact['path'], None, kube_client, check_mode=check_mode, verify=False),
                             params['outcome'])
            except steps.HandoffError:
                pass  # nothing left to record: the plan's directory is gone already
            steps.remove_handoff(fact['path'])
        # The fact goes too: a fact cache (AWX's) must not hand a later job a plan that no longer exists.
        result.update(changed=False, step='finish', ansible_facts={FACT: None})
        return result

    def fail(self, result, exc):
        if isinstance(exc, PlanError):
            result.update(failed=True, msg=exc.message(), errors=[str(e) for e in exc.errors], variables=exc.variables)
        else:
            result.update(failed=True, **exc.fail_kwargs())
        return result

    def run_plan(self, result, deploy, raw):
        """step=plan: every check, then the handoff file; the fact names only its path."""
        try:
            deploy.plan()
            lease = steps.lease_take(deploy.kube_client() if deploy.v['config_kubernetes'] else None, deploy.v,
                                     deploy.check_mode)
        except (PlanError, KubeError, DigitalOceanError) as exc:
            return self.fail(result, exc)
        data = steps.PlanContext.data_of(deploy, steps.effective(raw, deploy.specs), os.urandom(32))
        data['lease'] = lease
        files = deploy.files() if deploy.v['config_files_hosts'] else None
        directory, path = steps.write_handoff(data, files)
        for warning in deploy.warnings:
            self._display.warning(warning)
        self._display.display(data['summary'].rstrip(), stderr=True)
        result.update(changed=False, summary=data['summary'], plan=list(plan.PLAN_STEPS), warnings=[],
                      generated_secrets=data['generated'], version=data['version'], name=deploy.v['config_name'],
                      namespace=deploy.v['config_namespace'], config_out=deploy.config_out(),
                      ansible_facts={FACT: {'path': path, 'steps': list(steps.STEP_ORDER), 'version': data['version'],
                                            'summary': data['summary'],
                                            'files': steps.files_fact(deploy.v, directory, files)}})
        if deploy.diff:
            result['diff'] = [{'prepared': data['summary']}]
        return result

    def run_step(self, result, step, raw, fact, params, specs, kube_client, do_client):
        """One step, from the plan task's handoff file, or from a plan of its own when no plan task ran."""
        check_mode, diff = bool(self._task.check_mode), bool(self._task.diff)
        if fact and not os.path.isfile(fact.get('path') or ''):
            self._display.warning('mastodon_deploy step %s: the plan of an earlier task is gone (a fact from a cache?); '
                                  'this step plans for itself' % step)
            fact = None
        own = None
        try:
            if fact:
                ctx = steps.PlanContext.load(fact['path'], steps.effective(raw, specs), kube_client, check_mode, diff)
            else:
                component = steps.COMPONENT_OF.get(step)
                own = plan.Deploy(raw, specs, [component] if component else [], kube_client=kube_client,
                                  do_client=do_client, check_endpoint=check_endpoint, check_mode=check_mode, diff=diff)
                own.plan()
                for warning in own.warnings:
                    self._display.warning(warning)
                ctx = steps.PlanContext.of_deploy(own, steps.effective(raw, specs), kube_client)
                ctx.lease = steps.lease_take(ctx.client if ctx.v['config_kubernetes'] else None, ctx.v, check_mode)
            ctx.do_client = do_client  # the gate reads the PostgreSQL cluster's backups
            try:
                out = steps.run_step(step, ctx, lambda text: self._display.display('%s: %s' % (step, text), stderr=True))
            finally:
                if own is not None:
                    steps.lease_release(ctx)
        except steps.HandoffError as exc:
            result.update(failed=True, msg='mastodon_deploy step %s: %s' % (step, exc))
            return result
        except (PlanError, KubeError, DigitalOceanError) as exc:
            return self.fail(result, exc)
        out['planned_here'] = own is not None  # False: applied from the plan task's plan
        if out.get('msg') and ctx.v['config_kubernetes']:
            self._display.display('%s: %s' % (step, out['msg']), stderr=True)
        result.update(out)
        return result

    def run_rollback(self, result, raw, specs, kube_client, do_client):
        """step=rollback (playbooks/rollback.yml): the previous version of the deploy record, planned like a deploy
        (every check), applied to config, web, streaming and Sidekiq; refused before any write when it cannot be
        done (_deploy/rollback.py says when and why)."""
        check_mode, diff = bool(self._task.check_mode), bool(self._task.diff)

        def make_deploy(rolled, components):
            return plan.Deploy(rolled, specs, components, kube_client=kube_client, do_client=do_client,
                               check_endpoint=check_endpoint, check_mode=check_mode, diff=diff,
                               progress=lambda text: self._display.display('rollback: %s' % text, stderr=True))
        ctx = None
        try:
            deploy, record, target, already = rollback.plan_rollback(raw, specs, make_deploy, kube_client)
            for warning in deploy.warnings:
                self._display.warning(warning)
            if check_mode:
                out = deploy.check_result()
                out.pop('warnings', None)
            else:
                ctx = steps.PlanContext.of_deploy(deploy, steps.effective(raw, specs), kube_client)
                ctx.lease = steps.lease_take(ctx.client, ctx.v, check_mode)
                out = rollback.apply_rollback(deploy, record, target, already, deploy._utcnow)
                out.pop('warnings', None)
        except (PlanError, KubeError, DigitalOceanError) as exc:
            return self.fail(result, exc)
        finally:
            if ctx is not None:
                steps.lease_release(ctx)
        out.update(step='rollback', version=target)
        if out.get('msg'):
            self._display.display('rollback: %s' % out['msg'], stderr=True)
        result.update(out)
        return result

    @staticmethod
    def stage(deploy):
        files = deploy.files()
        files['kept.json'] = json.dumps(dict((k, deploy.env[k]) for k in KEPT_KEYS if deploy.env.get(k)))
        return steps.write_private('fediops-deploy-', files)

    @staticmethod
    def read_staged(directory):
        try:
            with open(os.path.join(directory, 'kept.json'), encoding='utf-8') as handle:
                kept = json.load(handle)
            with open(os.path.join(directory, 'env.production'), encoding='utf-8') as handle:
                env = handle.read()
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail('mastodon_deploy: staged_dir %s is not a directory written by stage_files: %s'
                                    % (directory, exc))
        return {'kept': kept, 'env': env}
