"""Shared helpers for the integration tests: run ansible-playbook against this collection.

The suite runs inside a copy of the collection at .../ansible_collections/fediops/mastodon
(scripts/run_tests.py), so `fediops.mastodon.*` resolves through ANSIBLE_COLLECTIONS_PATH.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(COLLECTION_ROOT, 'tests'))
pytest_plugins = ['cluster.pytest_plugin'] if os.path.exists(
    os.path.join(COLLECTION_ROOT, 'tests', 'cluster', 'pytest_plugin.py')) else []


class PlaybookResult:
    """Outcome of one ansible-playbook run with the json callback."""

    def __init__(self, completed, data):
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.data = data

    def task_results(self, host='localhost'):
        """Per-task results of a host, in order: a list of (task name, result dict)."""
        out = []
        for play in (self.data or {}).get('plays', []):
            for task in play.get('tasks', []):
                if host in task.get('hosts', {}):
                    out.append((task['task']['name'], task['hosts'][host]))
        return out

    def result(self, name, host='localhost'):
        """The result of the first task with that name."""
        for task_name, res in self.task_results(host):
            if task_name == name:
                return res
        raise KeyError(f'no task named {name!r} in {[task[0] for task in self.task_results(host)]}')

    @property
    def stats(self):
        return (self.data or {}).get('stats', {})


def _collections_path():
    parent = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
    if os.path.basename(os.path.dirname(os.path.dirname(COLLECTION_ROOT))) != 'ansible_collections':
        raise RuntimeError('run the integration tests through `make pytest` (a collection copy)')
    return parent


@pytest.fixture
def run_playbook(tmp_path):
    """Run a playbook given as YAML text; returns a PlaybookResult.

    Extra keyword arguments: extra_vars (dict), env (dict added to the environment), check (bool),
    diff (bool), verbosity (int), callback ('json' default, or 'default' for human output).
    """

    def _run(playbook_yaml, extra_vars=None, env=None, check=False, diff=False, verbosity=0,
             callback='json', inventory='localhost,'):
        path = tmp_path / f'playbook-{len(list(tmp_path.iterdir()))}.yml'
        path.write_text(textwrap.dedent(playbook_yaml), encoding='utf-8')
        cmd = ['ansible-playbook', '-i', inventory, '-c', 'local', str(path)]
        if extra_vars:
            cmd += ['-e', json.dumps(extra_vars)]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if verbosity:
            cmd.append('-' + 'v' * verbosity)
        run_env = dict(os.environ)
        run_env.update({
            'ANSIBLE_COLLECTIONS_PATH': _collections_path(),
            'ANSIBLE_STDOUT_CALLBACK': callback,
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
            'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
            'ANSIBLE_NOCOLOR': '1',
        })
        run_env.update(env or {})
        completed = subprocess.run(cmd, capture_output=True, text=True, env=run_env, check=False,
                                   cwd=str(tmp_path))
        data = None
        if callback == 'json':
            try:
                data = json.loads(completed.stdout)
            except ValueError:
                data = None
        return PlaybookResult(completed, data)

    return _run
