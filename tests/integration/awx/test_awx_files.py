# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/awx/: the credential type, the Kubernetes credential, the job template and configure_awx.yml.

Checked against what they have to match: the environment variables the collection's modules read,
the variables the roles document in their argument_specs, and the options of the awx.awx modules
(from `ansible-doc`, so a misspelt key is caught without an AWX server).
"""
from __future__ import annotations

import functools
import glob
import json
import os
import re
import subprocess

import pytest
import yaml

from awx_helpers import COLLECTION_ROOT, collections_path, env_vars_read_by_modules, role_variables, tool

AWX_DIR = os.path.join(COLLECTION_ROOT, 'docs', 'awx')
# What AWX's kubernetes_bearer_token injector sets (awx/main/models/credential/injectors.py).
AWX_KUBERNETES_INJECTS = {'K8S_AUTH_HOST', 'K8S_AUTH_API_KEY', 'K8S_AUTH_VERIFY_SSL', 'K8S_AUTH_SSL_CA_CERT'}


def _load(name):
    with open(os.path.join(AWX_DIR, name), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def _env():
    # awx.awx comes with PyPI's `ansible` package (site-packages/ansible_collections)
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
                ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false')


@functools.lru_cache(maxsize=None)
def _module_options(fqcn):
    done = subprocess.run([tool('ansible-doc'), '-j', fqcn], capture_output=True, text=True, check=False, env=_env())
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)[fqcn]['doc']
    names = set(doc.get('options', {}))
    for option in doc.get('options', {}).values():
        names.update(option.get('aliases') or [])
    return names


def test_every_file_is_valid_yaml():
    files = sorted(glob.glob(os.path.join(AWX_DIR, '**', '*.yml'), recursive=True))
    assert len(files) >= 6, files
    for path in files:
        with open(path, encoding='utf-8') as handle:
            assert yaml.safe_load(handle) is not None, path


def test_credential_type_injects_what_the_modules_read():
    ctype = _load('credential_type_digitalocean.yml')
    assert set(ctype) - {'name', 'description', 'kind', 'inputs', 'injectors'} == set()
    assert set(ctype) <= _module_options('awx.awx.credential_type')
    assert ctype['kind'] == 'cloud'
    fields = {f['id']: f for f in ctype['inputs']['fields']}
    assert fields['api_token']['secret'] is True
    assert set(ctype['inputs']['required']) <= set(fields)
    env = ctype['injectors']['env']
    assert set(ctype['injectors']) == {'env'}
    read = env_vars_read_by_modules()
    assert set(env) <= read, 'injected %s, the modules read %s' % (sorted(env), sorted(read))
    assert 'DIGITALOCEAN_ACCESS_TOKEN' in env
    # the injector templates refer only to input fields
    for value in env.values():
        assert set(re.findall(r'{{\s*(\w+)\s*}}', value)) <= set(fields), value


def test_kubernetes_credential_env_names_match_the_k8s_options():
    cred = _load('credential_kubernetes.yml')
    assert cred['credential_type'] == 'OpenShift or Kubernetes API Bearer Token'
    assert set(cred['inputs']) == {'host', 'bearer_token', 'verify_ssl', 'ssl_ca_cert'}
    assert set(cred['injects']) == AWX_KUBERNETES_INJECTS
    read = env_vars_read_by_modules()
    assert AWX_KUBERNETES_INJECTS <= read, sorted(AWX_KUBERNETES_INJECTS - read)
    # and the documentation of k8s_apply says so
    done = subprocess.run([tool('ansible-doc'), '-j', 'fediops.mastodon.k8s_apply'], capture_output=True, text=True,
                          check=False, env=_env())
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)['fediops.mastodon.k8s_apply']['doc']['options']
    text = json.dumps({k: options[k] for k in ('host', 'api_key', 'ca_cert', 'validate_certs')})
    for name in AWX_KUBERNETES_INJECTS:
        assert 'E(%s)' % name in text, name


def test_job_template_and_survey():
    template = _load('job_template.yml')
    assert set(template) <= _module_options('awx.awx.job_template'), sorted(
        set(template) - _module_options('awx.awx.job_template'))
    variables = role_variables()
    assert variables, 'no role variables found'
    survey = template['survey_spec']['spec']
    asked = [q['variable'] for q in survey]
    assert any('mastodon_version' in v for v in asked)
    for name in asked + list(template['extra_vars']):
        assert name in variables, '%s is not a documented role variable' % name
    for question in survey:
        assert question['type'] in ('text', 'multiplechoice', 'password', 'integer')
        assert question['question_name'] and question['required'] in (True, False)
    # the credentials are those the other two files describe
    ctype = _load('credential_type_digitalocean.yml')
    assert ctype['name'] == 'DigitalOcean API token'
    assert _load('credential_kubernetes.yml')['name'] in template['credentials']
    assert template['playbook'] == 'deploy.yml'
    assert os.path.isfile(os.path.join(AWX_DIR, 'project', template['playbook']))


def test_configure_awx_playbook():
    path = os.path.join(AWX_DIR, 'configure_awx.yml')
    done = subprocess.run([tool('ansible-playbook'), '--syntax-check', path], capture_output=True, text=True,
                          check=False, env=_env(), cwd=AWX_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(path, encoding='utf-8') as handle:
        plays = yaml.safe_load(handle)
    used = 0
    for task in plays[0]['tasks']:
        for key, args in task.items():
            if key.startswith('awx.awx.'):
                used += 1
                unknown = set(args) - _module_options(key)
                assert not unknown, '%s: unknown options %s' % (key, sorted(unknown))
    assert used >= 6


@pytest.mark.skipif(not os.path.isfile(os.path.join(COLLECTION_ROOT, 'playbooks', 'deploy.yml')),
                    reason='playbooks/deploy.yml has not landed yet')
def test_project_playbook_imports_the_collection_deploy(tmp_path):
    project = os.path.join(AWX_DIR, 'project')
    done = subprocess.run([tool('ansible-playbook'), '--syntax-check', '-i', os.path.join(project, 'inventory.yml'),
                           os.path.join(project, 'deploy.yml')], capture_output=True, text=True, check=False,
                          env=_env(), cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
