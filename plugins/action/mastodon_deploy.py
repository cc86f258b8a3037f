# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""fediops.mastodon.mastodon_deploy: plan, then apply, on the controller (thin: the logic is in
plugins/module_utils/_deploy/, mapped in docs/dev/ARCHITECTURE.md)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import plan, variables
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
    )
    return spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validated = ArgumentSpecValidator(argument_spec()).validate(self._task.args)
        if validated.error_messages:
            raise AnsibleActionFail('mastodon_deploy: %s' % '; '.join(validated.error_messages))
        params = validated.validated_parameters
        specs = variables.load_role_specs(ROLES_DIR, self._loader.load)
        names = set(n for options in specs.values() for n in options)
        prefixes = tuple(role + '_' for role in specs)
        raw = {}
        for name, value in (task_vars or {}).items():
            if name in names:
                raw[name] = self._templar.template(value)
            elif name.startswith(prefixes) or variables.misspelt_role_variable(name, specs, names):
                raw[name] = None  # unknown: only its name is reported
        clients = {}

        def kube_client():
            if 'kube' not in clients:
                clients['kube'] = KubeClient(kubeconfig=params['kubeconfig'], context=params['context'],
                                             host=params['host'], api_key=params['api_key'], ca_cert=params['ca_cert'],
                                             validate_certs=params['validate_certs'])
            return clients['kube']

        def do_client(v):
            return DigitalOceanClient(token=v['config_do_api_token'] or params['api_token'],
                                      base_url=v['config_do_api_base_url'] or params['api_base_url'],
                                      timeout=params['timeout'], validate_certs=v['config_do_validate_certs'],
                                      ca_path=v['config_do_ca_path'] or params['ca_path'],
                                      max_retries=params['max_retries'], max_wait=params['max_wait'],
                                      user_agent='fediops.mastodon mastodon_deploy')

        staged = self.read_staged(params['staged_dir']) if params['staged_dir'] else None
        deploy = plan.Deploy(raw, specs, params['components'], kube_client=kube_client, do_client=do_client,
                             check_endpoint=check_endpoint, check_mode=bool(self._task.check_mode) or params['stage_files'],
                             diff=bool(self._task.diff), staged=staged)
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
    def stage(deploy):
        directory = tempfile.mkdtemp(prefix='fediops-deploy-')
        try:
            files = deploy.files()
            files['kept.json'] = json.dumps(dict((k, deploy.env[k]) for k in KEPT_KEYS if deploy.env.get(k)))
            for name, text in files.items():
                fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                    handle.write(text)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return directory

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
