# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Small helpers shared by the AWX / execution environment / docs tests."""
from __future__ import annotations

import os
import shutil
import sys

import yaml

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def tool(name):
    """An executable of the test venv (next to sys.executable), else from PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if not found:
        raise RuntimeError('%s not found (run the tests through `make pytest`)' % name)
    return found


def collection_version():
    with open(os.path.join(COLLECTION_ROOT, 'galaxy.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)['version']


def collections_path():
    """The ANSIBLE_COLLECTIONS_PATH entry that holds this copy as ansible_collections/fediops/mastodon."""
    ns_dir = os.path.dirname(COLLECTION_ROOT)
    if os.path.basename(os.path.dirname(ns_dir)) != 'ansible_collections':
        raise RuntimeError('run the integration tests through `make pytest` (a collection copy)')
    return os.path.dirname(os.path.dirname(ns_dir))


def role_names():
    roles = os.path.join(COLLECTION_ROOT, 'roles')
    return sorted(n for n in os.listdir(roles) if os.path.isdir(os.path.join(roles, n))) if os.path.isdir(roles) else []


def role_argument_specs(role):
    """The `main` entry point of roles/<role>/meta/argument_specs.yml, or None."""
    for ext in ('yml', 'yaml'):
        path = os.path.join(COLLECTION_ROOT, 'roles', role, 'meta', 'argument_specs.' + ext)
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as handle:
                return (yaml.safe_load(handle) or {}).get('argument_specs', {}).get('main')
    return None


def role_variables():
    """Every variable the roles document in their argument_specs (falls back to defaults/main.yml
    for a role without argument_specs)."""
    names = set()
    for role in role_names():
        spec = role_argument_specs(role)
        if spec is not None:
            names.update((spec.get('options') or {}).keys())
            continue
        path = os.path.join(COLLECTION_ROOT, 'roles', role, 'defaults', 'main.yml')
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as handle:
                names.update((yaml.safe_load(handle) or {}).keys())
    return names


def env_vars_read_by_modules():
    """Environment variable names the collection's module_utils read as option fallbacks."""
    import re  # pylint: disable=import-outside-toplevel
    found = set()
    directory = os.path.join(COLLECTION_ROOT, 'plugins', 'module_utils')
    for name in sorted(os.listdir(directory)):
        if not name.endswith('.py'):
            continue
        with open(os.path.join(directory, name), encoding='utf-8') as handle:
            text = handle.read()
        for match in re.finditer(r"env_fallback,\s*\[([^\]]*)\]", text):
            found.update(re.findall(r"'([A-Z0-9_]+)'", match.group(1)))
        for match in re.finditer(r"TOKEN_ENV_VARS\s*=\s*\(([^)]*)\)", text):
            found.update(re.findall(r"'([A-Z0-9_]+)'", match.group(1)))
    return found
