"""Fixtures for the dotenv tests: the real parsers (Ruby dotenv gem, npm dotenv) as subprocesses."""
import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# `ansible_collections.fediops.mastodon` is made importable by tests/integration/conftest.py.


def _node_path():
    candidates = [p for p in os.environ.get('NODE_PATH', '').split(os.pathsep) if p]
    cache = os.environ.get('FEDIOPS_CACHE', os.path.expanduser('~/.cache/fediops-mastodon'))
    candidates.append(os.path.join(cache, 'node', 'node_modules'))
    for path in candidates:
        if os.path.isdir(os.path.join(path, 'dotenv')):
            return path
    return None


class Parsers:
    """Runs both real parsers on a file; each returns the parsed dict (and records the parser version)."""

    def __init__(self, node_path):
        self.node_path = node_path
        self.versions = {}

    def _run(self, name, cmd, env=None):
        completed = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env,
                                   timeout=120)
        assert completed.returncode == 0, f'{name} parser failed: {completed.stderr[-2000:]}'
        data = json.loads(completed.stdout)
        self.versions[name] = data['version']
        return data

    def ruby(self, path):
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'LANG': 'C.UTF-8'}
        data = self._run('ruby dotenv', ['ruby', os.path.join(HERE, 'parse_ruby.rb'), str(path)], env=env)
        assert data['commands'] == [], f'the Ruby parser would have run commands: {len(data["commands"])}'
        return data['values']

    def node(self, path):
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'NODE_PATH': self.node_path}
        return self._run('node dotenv', ['node', os.path.join(HERE, 'parse_node.js'), str(path)], env=env)['values']


@pytest.fixture(scope='session')
def parsers():
    node_path = _node_path()
    missing = []
    if not shutil.which('ruby'):
        missing.append('ruby')
    if not shutil.which('node') or not node_path:
        missing.append('node + npm dotenv (bash scripts/setup.sh installs tests/node)')
    if missing:
        pytest.fail('dotenv parsers missing: ' + ', '.join(missing))
    return Parsers(node_path)
