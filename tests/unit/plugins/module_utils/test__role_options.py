# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One home per rule: every role option is named literally where the plugins use it (grep finds it), and each
role's defaults/main.yml holds exactly its argument spec's defaults (one source of defaults)."""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
               for p in glob.glob(os.path.join(ROOT, 'roles', '*', 'meta', 'argument_specs.yml')))


def _options(role):
    with open(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)['argument_specs']['main']['options']


def _plugins_text():
    out = []
    for path in glob.glob(os.path.join(ROOT, 'plugins', '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as handle:
            out.append(handle.read())
    return '\n'.join(out)


def test_there_are_roles():
    assert ROLES == ['config', 'migrations', 'sidekiq', 'streaming', 'web']


@pytest.mark.parametrize('role', ROLES)
def test_every_option_is_named_literally_in_the_plugins(role):
    text = _plugins_text()
    missing = [name for name in _options(role) if not re.search(r"""['"]%s['"]""" % re.escape(name), text)]
    assert missing == [], 'options built from pieces or unused: %s' % missing


@pytest.mark.parametrize('role', ROLES)
def test_defaults_equal_the_argument_spec(role):
    with open(os.path.join(ROOT, 'roles', role, 'defaults', 'main.yml'), encoding='utf-8') as handle:
        defaults = yaml.safe_load(handle) or {}
    spec = dict((name, option.get('default')) for name, option in _options(role).items()
                if not option.get('required'))
    assert sorted(defaults) == sorted(spec)
    assert [name for name in spec if defaults[name] != spec[name]] == []


def test_deploy_yml_has_no_default_of_its_own_for_a_role_option():
    names = set(name for role in ROLES for name in _options(role))
    with open(os.path.join(ROOT, 'playbooks', 'deploy.yml'), encoding='utf-8') as handle:
        text = handle.read()
    found = [m.group(1) for m in re.finditer(r'(\w+)\s*\|\s*default\(', text) if m.group(1) in names]
    assert found == []


def test_one_did_you_mean():
    """difflib is used in one place (_mastodon_config.closest); the others import did_you_mean from there."""
    users = []
    for path in glob.glob(os.path.join(ROOT, 'plugins', '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as handle:
            if 'difflib' in handle.read():
                users.append(os.path.relpath(path, ROOT))
    assert users == ['plugins/module_utils/_mastodon_config.py']


@pytest.mark.parametrize('value, environment_ok, variable_ok', [
    ('social.example', True, True),
    ('Social.Example', True, False),     # resolvers take any case; an Ingress host must be lower case
    ('social.example.', True, False),    # a final dot: a fully qualified name, not a DNS-1123 subdomain
    ('-social.example', False, False),
    ('a' * 64 + '.example', False, False),
])
def test_one_host_name_rule(value, environment_ok, variable_ok):
    from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config
    from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import rules
    assert _mastodon_config.is_host_name(value) is environment_ok
    try:
        rules.check_host('config_local_domain', value)
        accepted = True
    except _mastodon_config.ConfigError:
        accepted = False
    assert accepted is variable_ok
