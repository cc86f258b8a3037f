# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/execution-environment.yml: `ansible-builder create` and the build context it produces.

The image cannot be built here (no container registry), so the test checks the build context
(Containerfile, requirement files, the collection tarball) and runs ansible-builder's own
introspection script on the installed collection, which is what the builder stage of any EE that
installs fediops.mastodon runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from awx_helpers import COLLECTION_ROOT, collection_version, tool

PYTHON_NEEDS = ('requests', 'kubernetes', 'cryptography', 'PyYAML')


def _names(lines):
    return {re.split(r'[<>=!~\[ ;#]', line.strip(), maxsplit=1)[0].lower()
            for line in lines if line.strip() and not line.lstrip().startswith('#')}


@pytest.fixture(scope='module')
def ee_context(tmp_path_factory):
    """Builds the collection tarball, then runs `ansible-builder create` on a copy of meta/."""
    work = tmp_path_factory.mktemp('ee')
    shutil.copytree(os.path.join(COLLECTION_ROOT, 'meta'), work / 'meta')
    build_script = os.path.join(COLLECTION_ROOT, 'scripts', 'build_collection.sh')
    done = subprocess.run(['bash', build_script, str(work / 'build')], capture_output=True, text=True, check=False,
                          env=_tools_env())
    assert done.returncode == 0, done.stdout + done.stderr
    context = work / 'context'
    done = _builder_create(work, context)
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Complete! The build context can be found at' in done.stdout
    return work, context


def _tools_env():
    """PATH with the directory of this Python's tools (ansible-galaxy) first."""
    return dict(os.environ, PATH=os.path.dirname(tool('ansible-galaxy')) + os.pathsep + os.environ.get('PATH', ''))


def _builder_create(work, context):
    return subprocess.run([tool('ansible-builder'), 'create', '-f', str(work / 'meta' / 'execution-environment.yml'),
                           '--context', str(context), '--output-filename', 'Containerfile', '-v', '2'],
                          capture_output=True, text=True, check=False, cwd=str(work))


def test_create_without_a_built_collection_fails_loudly(tmp_path):
    """No `make build` before `ansible-builder create`: a DefinitionError naming the missing file, no context."""
    shutil.copytree(os.path.join(COLLECTION_ROOT, 'meta'), tmp_path / 'meta')
    done = _builder_create(tmp_path, tmp_path / 'context')
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert 'build/ee-requirements.yml does not exist' in output, output
    assert not (tmp_path / 'context' / 'Containerfile').exists()


def test_definition_is_v3_and_introspection_compatible():
    with open(os.path.join(COLLECTION_ROOT, 'meta', 'execution-environment.yml'), encoding='utf-8') as handle:
        definition = yaml.safe_load(handle)
    assert definition['version'] == 3
    deps = definition['dependencies']
    # ansible-builder reads these relative to meta/, its introspection relative to the collection root:
    # both files must exist, identical, in both places.
    for key, name in (('python', 'requirements.txt'), ('system', 'bindep.txt')):
        assert deps[key] == name, 'dependencies.%s must be the plain file name %s' % (key, name)
        for base in ('', 'meta'):
            path = os.path.join(COLLECTION_ROOT, base, name)
            assert os.path.isfile(path) and not os.path.islink(path), path
        with open(os.path.join(COLLECTION_ROOT, name), 'rb') as root_file, \
                open(os.path.join(COLLECTION_ROOT, 'meta', name), 'rb') as meta_file:
            assert root_file.read() == meta_file.read(), (
                'meta/%s must be an exact copy of %s: cp %s meta/%s' % (name, name, name, name))
    with open(os.path.join(COLLECTION_ROOT, 'requirements.txt'), encoding='utf-8') as handle:
        assert {n.lower() for n in PYTHON_NEEDS} <= _names(handle)
    # The local tarball named in the definition is the version galaxy.yml builds.
    version = collection_version()
    assert definition['additional_build_files'][0]['src'] == '../build/fediops-mastodon-%s.tar.gz' % version
    assert deps['galaxy'] == '../build/ee-requirements.yml'
    assert definition['images']['base_image']['name']


def test_ansible_builder_create(ee_context):
    work, context = ee_context
    containerfile = (context / 'Containerfile').read_text(encoding='utf-8')
    version = collection_version()
    # base image is a build argument (override with --build-arg EE_BASE_IMAGE=...)
    assert re.search(r'^ARG EE_BASE_IMAGE="quay\.io/', containerfile, re.M)
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    assert re.search(r'ANSIBLE_INSTALL_REFS="ansible-core>=2\.17,<2\.20 ansible-runner', containerfile)
    assert 'FROM base AS galaxy' in containerfile
    assert re.search(r'ansible-galaxy collection install \$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements\.yml',
                     containerfile)
    assert 'ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline"' in containerfile
    assert '--user-pip=requirements.txt --user-bindep=bindep.txt' in containerfile
    assert 'LABEL ansible-execution-environment=true' in containerfile

    built = context / '_build'
    requirements = (built / 'requirements.txt').read_text(encoding='utf-8')
    assert {n.lower() for n in PYTHON_NEEDS} <= _names(requirements.splitlines())
    assert 'ca-certificates' in (built / 'bindep.txt').read_text(encoding='utf-8')
    galaxy = yaml.safe_load((built / 'requirements.yml').read_text(encoding='utf-8'))
    assert galaxy['collections'] == [{'name': 'collections/fediops-mastodon-%s.tar.gz' % version, 'type': 'file'}]
    tarball_rel = galaxy['collections'][0]['name']
    tarball = built / tarball_rel
    assert tarball.is_file(), sorted(str(p.relative_to(context)) for p in context.rglob('*'))
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile('MANIFEST.json'))
        members = set(archive.getnames())
    info = manifest['collection_info']
    assert (info['namespace'], info['name'], info['version']) == ('fediops', 'mastodon', version)
    for member in ('meta/execution-environment.yml', 'meta/requirements.txt', 'meta/bindep.txt',
                   'requirements.txt', 'bindep.txt', 'meta/runtime.yml'):
        assert member in members, member
    assert any(m.startswith('plugins/modules/') for m in members)
    # no test, build or VCS content in what goes into the image
    assert not any(m.startswith(('tests/cluster', 'tests/integration', '.git/', 'build/')) for m in members)
    print('build context:', sorted(str(p.relative_to(context)) for p in context.rglob('*') if p.is_file()))


def test_introspection_of_the_installed_collection(ee_context, tmp_path):
    """What the builder stage of ANY EE runs over installed collections finds our needs."""
    _work, context = ee_context
    tarball = next((context / '_build' / 'collections').glob('fediops-mastodon-*.tar.gz'))
    installed = tmp_path / 'collections'
    done = subprocess.run([tool('ansible-galaxy'), 'collection', 'install', '--offline', '--force', '-p',
                           str(installed), str(tarball)], capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed)))
    assert done.returncode == 0, done.stdout + done.stderr
    script = context / '_build' / 'scripts' / 'introspect.py'
    done = subprocess.run([sys.executable, str(script), 'introspect', str(installed)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    found = yaml.safe_load(done.stdout.split('---', 1)[1])
    python = [line for line in found['python'] if 'fediops.mastodon' in line]
    system = [line for line in found['system'] if 'fediops.mastodon' in line]
    # PyYAML is left out by introspection on purpose: ansible-core brings it.
    assert {'requests', 'kubernetes', 'cryptography'} <= _names(python), found
    assert {'ca-certificates'} <= _names(system), found
