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
# In the collection copy, `ansible_collections.fediops.mastodon` is importable too, for the tests that use the
# module_utils directly.
_COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
if os.path.basename(os.path.dirname(os.path.dirname(COLLECTION_ROOT))) == 'ansible_collections' \
        and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
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

    def task_output(self, name, host=None):
        """The part of the json callback's output about the first task with that name (only about
        `host` if given), as the callback prints it."""
        for play in (self.data or {}).get('plays', []):
            for task in play.get('tasks', []):
                if task['task']['name'] == name:
                    return json.dumps(task['hosts'][host] if host else task, indent=4, sort_keys=True)
        raise KeyError(f'no task named {name!r}')

    @property
    def stats(self):
        return (self.data or {}).get('stats', {})


def _collections_path():
    parent = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_ROOT)))
    if os.path.basename(os.path.dirname(os.path.dirname(COLLECTION_ROOT))) != 'ansible_collections':
        raise RuntimeError('run the integration tests through `make pytest` (a collection copy)')
    return parent


def run_playbook_in(directory, playbook_yaml, extra_vars=None, env=None, check=False, diff=False, verbosity=0,
                    callback='json', inventory='localhost,', cases=None, forks=None):
    """Write the playbook (YAML text) into `directory`, run it there and return a PlaybookResult.

    Options as for the run_playbook fixture.
    """
    index = len(list(directory.iterdir()))
    path = directory / f'playbook-{index}.yml'
    while path.exists() or (directory / f'inventory-{index}.yml').exists():
        index += 1
        path = directory / f'playbook-{index}.yml'
    path.write_text(textwrap.dedent(playbook_yaml), encoding='utf-8')
    if cases is not None:
        inventory = cases_inventory(directory / f'inventory-{index}.yml', cases)
    cmd = ['ansible-playbook', '-i', inventory, '-c', 'local', str(path)]
    if forks:
        cmd += ['--forks', str(forks)]
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
                               cwd=str(directory))
    data = None
    if callback == 'json':
        try:
            data = json.loads(completed.stdout)
        except ValueError:
            data = None
    return PlaybookResult(completed, data)


def cases_inventory(path, cases):
    """Write an inventory (JSON, which is YAML) in which every case is a host run locally, with its
    parameters in the host variable `case`; returns its path (run_playbook(..., cases=cases) does this).

    One play on `hosts: all` whose tasks take their parameters from `case` then runs every case in
    parallel (up to `forks` at once), and the json callback reports each case as a host of the
    task: PlaybookResult.result(task, host=case name).
    """
    hosts = {name: {'case': params} for name, params in cases.items()}
    inventory = {'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
                         'hosts': hosts}}
    path.write_text(json.dumps(inventory, indent=1), encoding='utf-8')
    return str(path)


@pytest.fixture
def run_playbook(tmp_path):
    """Run a playbook given as YAML text; returns a PlaybookResult.

    Extra keyword arguments: extra_vars (dict), env (dict added to the environment), check (bool),
    diff (bool), verbosity (int), callback ('json' default, or 'default' for human output),
    inventory, cases (a dict: run every case as a host of its own, see cases_inventory), forks (int).
    """

    def _run(playbook_yaml, *args, **kwargs):
        return run_playbook_in(tmp_path, playbook_yaml, *args, **kwargs)

    return _run


@pytest.fixture(scope='module')
def run_playbook_module(tmp_path_factory):
    """run_playbook for module-scoped fixtures that run a batch of cases in ONE ansible-playbook
    (each case a task, or a host: cases=...; with ignore_errors and register) and cache the
    PlaybookResult, so that parametrized tests check each case from its own task result. Same
    options as run_playbook; the playbooks are kept in a directory of their own (make the case
    files with tmp_path_factory).
    """
    directory = tmp_path_factory.mktemp('batch-playbooks')

    def _run(playbook_yaml, *args, **kwargs):
        return run_playbook_in(directory, playbook_yaml, *args, **kwargs)

    return _run
