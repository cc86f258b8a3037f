# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every code block of the guides (docs/docsite/rst) is checked, according to the comment above it:

    .. fediops-check: vars [sidekiq-valid|sidekiq-invalid]
        role variables: names and types from the roles' argument_specs (validate_argument_spec);
        sidekiq-valid / sidekiq-invalid also go through the plan of fediops.mastodon.mastodon_deploy
        (without a cluster), which must accept / refuse them
    .. fediops-check: playbook
        `ansible-playbook --syntax-check`, and the variables set in it are documented role variables
    .. fediops-check: yaml [same-as=FILE]
        valid YAML; with same-as, each top-level key equals that of FILE (so the guide shows the file)
    .. fediops-check: shell run
        run with bash -e in a scratch copy of the collection
    .. fediops-check: shell exercised-by=PATH
        `bash -n`, and PATH (a test, or scripts/demo.sh for `make demo`) exists: it runs the same
        commands against the local cluster and the DigitalOcean stand-in
A code block without a marker fails the test.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from docs_helpers import (COLLECTION_ROOT, DOCSITE, all_blocks, code_blocks, collections_path, guide_names,
                          role_argument_specs, role_names, role_variables, tool)

BLOCKS = all_blocks()
PLAN_WITHOUT_CLUSTER = {'config_kubernetes': False, 'config_local_domain': 'social.example.org',
                        'config_database_source': 'explicit', 'config_db_host': 'db.example.org',
                        'config_db_password': 'guide-check-only', 'config_tls_preflight': False,
                        'config_media_ephemeral': True}
ROLE_PREFIXES = tuple('%s_' % role for role in role_names())


def _env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
                ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false',
                ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK='default')


def _blocks(kind):
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == kind]


def _playbook(tmp_path, plays):
    path = tmp_path / 'playbook.yml'
    path.write_text(yaml.safe_dump(plays, sort_keys=False), encoding='utf-8')
    return subprocess.run([tool('ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(path)],
                          capture_output=True, text=True, check=False, env=_env(), cwd=str(tmp_path))


def test_guides_and_extra_docs_agree():
    listed = set(guide_names())
    present = {n[:-4] for n in os.listdir(os.path.join(DOCSITE, 'rst')) if n.endswith('.rst')}
    assert listed == present
    for name in listed:
        with open(os.path.join(DOCSITE, 'rst', name + '.rst'), encoding='utf-8') as handle:
            assert handle.readline().strip() == '.. _ansible_collections.fediops.mastodon.docsite.%s:' % name


def test_every_code_block_is_checked():
    unmarked = [b.id for b in BLOCKS if b.kind is None]
    assert not unmarked, 'code blocks without a `.. fediops-check:` comment: %s' % unmarked
    kinds = {b.kind for b in BLOCKS}
    assert kinds <= {'vars', 'playbook', 'yaml', 'shell'}, kinds
    for guide in guide_names():
        assert code_blocks(guide), '%s has no code block' % guide


@pytest.mark.parametrize('block', _blocks('vars'))
def test_vars_block(block, tmp_path):
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict) and data
    unknown = set(data) - role_variables()
    assert not unknown, '%s: not documented in any role argument_specs: %s' % (block.id, sorted(unknown))
    # types and choices, role by role, with the roles' own argument_specs
    tasks = []
    for role in role_names():
        spec = role_argument_specs(role)
        mine = {k: v for k, v in data.items() if k.startswith(role + '_')}
        if not mine or spec is None:
            continue
        options = copy.deepcopy(spec.get('options') or {})
        for option in options.values():
            option.pop('required', None)
        tasks.append({'name': 'Check the %s variables' % role,
                      'ansible.builtin.validate_argument_spec': {'argument_spec': options,
                                                                 'provided_arguments': mine}})
    play_vars = dict(data)
    if block.args.get('sidekiq-valid') or block.args.get('sidekiq-invalid'):
        # The whole plan, without a cluster: explicit endpoints, no TLS preflight, nothing applied.
        play_vars = dict(PLAN_WITHOUT_CLUSTER, **data)
        tasks.append({'name': 'The plan checks', 'fediops.mastodon.mastodon_deploy': {}, 'check_mode': True})
    play = [{'name': 'check', 'hosts': 'localhost', 'gather_facts': False, 'vars': play_vars, 'tasks': tasks}]
    done = _playbook(tmp_path, play)
    if block.args.get('sidekiq-invalid'):
        assert done.returncode != 0, done.stdout
        assert 'scheduler queue must run in exactly one replica' in done.stdout, done.stdout[-3000:]
        assert 'The plan checks' in done.stdout
    else:
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def _variables_set(plays):
    names = set()
    for play in plays:
        names.update((play.get('vars') or {}).keys())
        for task in (play.get('tasks') or []) + (play.get('pre_tasks') or []) + (play.get('post_tasks') or []):
            if any(k.endswith(('include_role', 'import_role')) for k in task):
                names.update((task.get('vars') or {}).keys())
        for role in play.get('roles') or []:
            if isinstance(role, dict):
                names.update((role.get('vars') or {}).keys())
    return names


@pytest.mark.parametrize('block', _blocks('playbook'))
def test_playbook_block(block, tmp_path):
    plays = yaml.safe_load(block.text)
    assert isinstance(plays, list) and plays
    path = tmp_path / 'guide.yml'
    path.write_text(block.text, encoding='utf-8')
    done = subprocess.run([tool('ansible-playbook'), '--syntax-check', '-i', 'localhost,', str(path)],
                          capture_output=True, text=True, check=False, env=_env(), cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    unknown = {n for n in _variables_set(plays) if n not in role_variables()}
    assert not unknown, '%s sets variables no role documents: %s' % (block.id, sorted(unknown))


@pytest.mark.parametrize('block', _blocks('yaml'))
def test_yaml_block(block):
    data = yaml.safe_load(block.text)
    assert data is not None
    same_as = block.args.get('same-as')
    if same_as:
        with open(os.path.join(COLLECTION_ROOT, same_as), encoding='utf-8') as handle:
            reference = yaml.safe_load(handle)
        for key, value in data.items():
            assert reference.get(key) == value, '%s: %s differs from %s' % (block.id, key, same_as)


@pytest.fixture(scope='module')
def scratch_collection(tmp_path_factory):
    """A copy of the collection without tests and build output, to run shell blocks in."""
    root = tmp_path_factory.mktemp('guide-shell') / 'ansible_collections' / 'fediops' / 'mastodon'
    shutil.copytree(COLLECTION_ROOT, root, ignore=shutil.ignore_patterns(
        '.git', 'tests', 'build', 'molecule', '__pycache__', '*.tar.gz', 'node_modules'))
    return root


@pytest.mark.parametrize('block', _blocks('shell'))
def test_shell_block(block, scratch_collection):
    done = subprocess.run(['bash', '-n'], input=block.text, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    if block.args.get('run'):
        done = subprocess.run(['bash', '-euo', 'pipefail'], input=block.text, capture_output=True, text=True,
                              check=False, cwd=str(scratch_collection),
                              env=dict(_env(), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH']))
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
        if 'ansible-builder create' in block.text:
            assert (scratch_collection / 'build' / 'ee' / 'Containerfile').is_file()
        return
    by = block.args.get('exercised-by')
    assert by, '%s: a shell block must be `run` or name what exercises it (exercised-by=PATH)' % block.id
    assert os.path.isfile(os.path.join(COLLECTION_ROOT, by)), '%s: %s does not exist' % (block.id, by)
