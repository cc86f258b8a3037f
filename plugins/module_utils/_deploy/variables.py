# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Role variables: loaded from each role's meta/argument_specs.yml (the single source of options), typed strictly.

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import copy
import os
import re

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy.errors import did_you_mean
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import closest
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

ROLES = ('config', 'migrations', 'web', 'streaming', 'sidekiq')
_BOOL_TRUE = ('true', 'yes', 'on', '1')
_BOOL_FALSE = ('false', 'no', 'off', '0')
INT_TEXT = re.compile(r'\A[+-]?[0-9]+\Z')


def load_role_specs(roles_dir, loader):
    """{role: {variable: spec}} from roles/<role>/meta/argument_specs.yml (entry point main)."""
    specs = {}
    for role in ROLES:
        with open(os.path.join(roles_dir, role, 'meta', 'argument_specs.yml'), encoding='utf-8') as handle:
            specs[role] = loader(handle.read())['argument_specs']['main'].get('options') or {}
    return specs


def _type_error(spec_type):
    return {'int': 'must be an integer', 'bool': 'must be true or false', 'dict': 'must be a mapping',
            'list': 'must be a list', 'str': 'must be a string', 'path': 'must be a path (a string)',
            'float': 'must be a number'}.get(spec_type, 'has the wrong type')


def _described(value):
    """What the value is, without echoing it (it may be a secret)."""
    if value is None:
        return 'a null'
    # ansible-core wraps values in its own subclasses (_AnsibleTaggedStr...): name the base type the operator wrote
    for base, word in ((bool, 'boolean'), (int, 'number'), (float, 'number'), (str, 'string'), (dict, 'mapping'),
                       (list, 'list')):
        if isinstance(value, base):
            return 'a %s' % word
    return 'a %s' % type(value).__name__


def coerce(name, spec, value):
    """`value` as the spec's type, strictly: ints are ints or digit strings (-e var=3), booleans are booleans or
    yes/no/true/false strings; nothing else is converted. Raises ConfigError naming the variable."""
    kind = spec.get('type', 'str')
    if kind == 'int':
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and INT_TEXT.match(value))):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        value = int(value)
    elif kind == 'bool':
        if isinstance(value, str) and value.strip().lower() in _BOOL_TRUE + _BOOL_FALSE:
            value = value.strip().lower() in _BOOL_TRUE
        elif not isinstance(value, bool):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
    elif kind in ('str', 'path'):
        if not isinstance(value, str):
            raise ConfigError(name, '%s, got %s (quote it)' % (_type_error(kind), _described(value)))
        value = str(value)
    elif kind == 'dict':
        if not isinstance(value, dict):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        value = dict(value)
    elif kind == 'list':
        if not isinstance(value, list):
            raise ConfigError(name, '%s, got %s' % (_type_error(kind), _described(value)))
        elements = spec.get('elements')
        if elements:
            value = [coerce('%s[%d]' % (name, i), {'type': elements}, item) for i, item in enumerate(value)]
    if spec.get('choices') is not None and value not in spec['choices']:
        raise ConfigError(name, 'must be one of %s%s' % (', '.join(repr(c) for c in spec['choices']),
                                                         did_you_mean(str(value), [str(c) for c in spec['choices']])))
    return value


# Bounds on any input, checked first so that no later rule spends time on a value Kubernetes or Linux would refuse
# anyway (and the value is replaced by its default for the rest of the checks, as a wrong type is).
# Kubernetes refuses a Secret or ConfigMap whose data exceed 1 MiB (k8s.io/kubernetes pkg/apis/core/validation:
# MaxSecretSize, and the same bound for ConfigMaps): no single variable can be larger than one object.
MAX_OBJECT_BYTES = 1024 * 1024
# Linux refuses to exec a process whose environment holds a string "KEY=value" of 128 KiB or more
# (MAX_ARG_STRLEN, 32 pages: execve fails with E2BIG, "argument list too long"): the container would not start.
MAX_ENV_STRING_BYTES = 32 * 4096
# The variables whose entries become environment variables of the containers.
ENV_VARIABLES = ('config_env', 'config_extra_env', 'config_secrets', 'web_extra_env', 'streaming_extra_env',
                 'sidekiq_extra_env', 'migrations_extra_env')


def _size(value, budget):
    """Bytes of `value` (strings as UTF-8, containers summed), counting no further than `budget`."""
    total, todo = 0, [value]
    while todo and total <= budget:
        item = todo.pop()
        if isinstance(item, str):
            total += len(item.encode('utf-8', 'surrogatepass'))
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        else:
            total += 8
    return total


def size_problems(name, value):
    """[ConfigError] when the variable is larger than any object can hold, or an entry of an environment
    variable larger than a process accepts. Never echoes the value."""
    total = _size(value, MAX_OBJECT_BYTES)
    if total > MAX_OBJECT_BYTES:
        return [ConfigError(name, 'holds more than %d bytes: larger than Kubernetes accepts in one object (a Secret or '
                                  'ConfigMap holds at most 1 MiB); the value was not processed' % MAX_OBJECT_BYTES)]
    errors = []
    if name in ENV_VARIABLES and isinstance(value, dict):
        for key, item in value.items():
            length = _size(key, MAX_ENV_STRING_BYTES) + 1 + _size(item, MAX_ENV_STRING_BYTES)
            if length >= MAX_ENV_STRING_BYTES:
                shown = key if isinstance(key, str) and len(key) <= 64 else 'an entry'
                errors.append(ConfigError(name, '%s: KEY=value holds %s%d bytes, and Linux starts no process with an '
                                                'environment string of %d bytes or more (MAX_ARG_STRLEN: "argument list '
                                                'too long"); the value was not processed'
                                          % (shown, 'more than ' if length > MAX_ENV_STRING_BYTES else '', length,
                                             MAX_ENV_STRING_BYTES)))
    return errors


def check_variables(task_vars, specs):
    """(values, errors): every variable of every role, typed; defaults from the specs where unset."""
    values, errors = {}, []
    known = {}
    for role, options in specs.items():
        for name, spec in options.items():
            known[name] = role
            if name in task_vars and task_vars[name] is not None:
                too_large = size_problems(name, task_vars[name])
                if too_large:
                    errors += too_large
                    values[name] = copy.deepcopy(spec.get('default'))
                    continue
                try:
                    values[name] = coerce(name, spec, task_vars[name])
                except ConfigError as exc:
                    errors.append(exc)
            elif spec.get('required'):
                errors.append(ConfigError(name, 'is required'))
            else:
                values[name] = copy.deepcopy(spec.get('default'))
    for name in sorted(task_vars):
        role = name.split('_', 1)[0]
        if role in specs and '_' in name and '__' not in name and name not in known:
            errors.append(ConfigError(name, 'is not a variable of the %s role%s' % (
                role, did_you_mean(name, [n for n, r in known.items() if r == role]))))
        else:
            match = misspelt_role_variable(name, specs, known)
            if match:
                errors.append(ConfigError(name, 'is not a variable of any role (did you mean %s?)' % match))
    return values, errors


def misspelt_role_variable(name, specs, known):
    """The role variable that `name` misspells in its role prefix (migration_resources, sidekick_workers), or None.
    Only when the prefix is close to a role name and the whole name close to one of its variables, so that the
    play's other variables are left alone."""
    role = name.split('_', 1)[0]
    if role in specs or '_' not in name or not closest(role, specs):
        return None
    return closest(name, known, cutoff=0.85)
