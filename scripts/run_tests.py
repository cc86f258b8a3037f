"""Runs the whole test suite in order and ends with one line `N passed, M failed`.

Stages: ansible-lint, ansible-test sanity, ansible-test units, the pytest tests (cluster tool,
integration) against a real local Kubernetes API server, and every molecule scenario.
ansible-test needs the collection under ansible_collections/<namespace>/<name>, so the stages run
in a synchronised copy of the working tree. Run through `make test` (scripts/setup.sh prepares
the machine first). Select stages with FEDIOPS_STAGES=lint,sanity,units,pytest,molecule.
"""
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import time
from xml.etree import ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get('FEDIOPS_CACHE', os.path.expanduser('~/.cache/fediops-mastodon'))
# Separate FEDIOPS_COLLECTIONS directories let several checkouts run the suite at once.
COLLECTIONS = os.environ.get('FEDIOPS_COLLECTIONS', os.path.join(CACHE, 'collections'))
LOGS = os.path.join(COLLECTIONS, 'logs')
COPY = os.path.join(COLLECTIONS, 'ansible_collections', 'fediops', 'mastodon')
ALL_STAGES = ('lint', 'sanity', 'units', 'pytest', 'molecule')
MOLECULE_WORKERS = 2


class Tally:
    def __init__(self):
        self.rows = []

    def add(self, stage, name, passed, failed, seconds):
        self.rows.append((stage, name, passed, failed, seconds))
        status = 'ok' if failed == 0 else 'FAILED'
        print(f'==> {stage}: {name}: {passed} passed, {failed} failed ({seconds:.0f} s) {status}',
              flush=True)

    def totals(self):
        return sum(r[2] for r in self.rows), sum(r[3] for r in self.rows)


def banner(text):
    print(f'\n######## {text} ({time.strftime("%H:%M:%S")})', flush=True)


def run(cmd, cwd=COPY, env=None, log=None):
    """Run a command, streaming or logging its output; returns the exit code."""
    if log:
        with open(log, 'w', encoding='utf-8') as handle:
            return subprocess.run(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                  check=False).returncode
    return subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode


def sync_copy():
    os.makedirs(COPY, exist_ok=True)
    # build/ is never copied (below); one left by an older copy must go too (rsync keeps excluded files).
    shutil.rmtree(os.path.join(COPY, 'build'), ignore_errors=True)
    os.makedirs(LOGS, exist_ok=True)
    subprocess.run(['rsync', '-a', '--delete',
                    '--exclude=.git', '--exclude=tests/output', '--exclude=node_modules',
                    '--exclude=__pycache__', '--exclude=.pytest_cache', '--exclude=*.tar.gz',
                    # make build / make docs output: sanity would lint the built site
                    '--exclude=/build',
                    REPO + '/', COPY + '/'], check=True)


def base_env():
    env = dict(os.environ)
    env['ANSIBLE_COLLECTIONS_PATH'] = COLLECTIONS
    env['ANSIBLE_FORCE_COLOR'] = '0'
    env['PY_COLORS'] = '0'
    env['FEDIOPS_REPO_COPY'] = COPY
    return env


def junit_counts(paths):
    passed = failed = 0
    for path in paths:
        root = ElementTree.parse(path).getroot()
        suites = [root] if root.tag == 'testsuite' else root.iter('testsuite')
        for suite in suites:
            tests = int(suite.get('tests', 0))
            bad = int(suite.get('failures', 0)) + int(suite.get('errors', 0))
            skipped = int(suite.get('skipped', 0))
            passed += tests - bad - skipped
            failed += bad
    return passed, failed


def stage_lint(tally, env):
    checks = (
        ('ansible-lint (production profile)', ['ansible-lint', '--profile', 'production']),
        ('antsibull-changelog lint', ['antsibull-changelog', 'lint']),
        ('antsibull-docs lint-collection-docs', ['antsibull-docs', 'lint-collection-docs',
                                                 '--plugin-docs', '.']),
    )
    for name, cmd in checks:
        start = time.time()
        code = run(cmd, env=env)
        tally.add('lint', name, int(code == 0), int(code != 0), time.time() - start)


def stage_sanity(tally, env):
    start = time.time()
    listed = subprocess.run(['ansible-test', 'sanity', '--list-tests', '--python', '3.11'],
                            cwd=COPY, env=env, capture_output=True, text=True, check=False)
    names = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    log = os.path.join(LOGS, 'sanity.log')
    code = run(['ansible-test', 'sanity', '--venv', '--python', '3.11', '--color', 'no'],
               env=env, log=log)
    with open(log, encoding='utf-8') as handle:
        output = handle.read()
    print(output[-20000:] if code else output[-1500:], flush=True)
    failed = []
    marker = 'sanity test(s) listed below'
    if marker in output:
        tail = output.split(marker, 1)[1].splitlines()[1:]
        failed = [line.split()[0] for line in tail if line.strip() and line.split()[0] in names]
    if code and not failed:
        failed = ['(ansible-test sanity)']
    tally.add('sanity', f'ansible-test sanity ({len(names)} tests)', len(names) - len(failed),
              len(failed), time.time() - start)


def stage_units(tally, env):
    start = time.time()
    if not glob.glob(os.path.join(COPY, 'tests/unit/**/test_*.py'), recursive=True):
        print('no unit tests yet', flush=True)
        return
    junit_dir = os.path.join(COPY, 'tests/output/junit')
    shutil.rmtree(junit_dir, ignore_errors=True)
    code = run(['ansible-test', 'units', '--venv', '--python', '3.11', '--color', 'no',
                '--requirements'], env=env)
    passed, failed = junit_counts(glob.glob(os.path.join(junit_dir, '*.xml')))
    if code and not failed:
        failed = 1
    tally.add('units', 'ansible-test units', passed, failed, time.time() - start)


def cluster_command(*args, env):
    tool = os.path.join(COPY, 'tests/cluster/localcluster.py')
    state = os.path.join(COLLECTIONS, 'cluster')
    return subprocess.run([sys.executable, tool, *args, '--state-dir', state], cwd=COPY,
                          env=env, capture_output=True, text=True, check=False)


def stage_pytest(tally, env):
    start = time.time()
    selected = os.environ.get('FEDIOPS_PYTEST_PATHS', 'tests/cluster tests/integration').split()
    paths = [p for p in selected if '::' in p or os.path.isfile(os.path.join(COPY, p))
             or glob.glob(os.path.join(COPY, p, '**/test_*.py'), recursive=True)]
    if not paths:
        return
    junit = os.path.join(LOGS, 'pytest-junit.xml')
    code = run([sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-o',
                'junit_family=xunit2', f'--junitxml={junit}', '-q', '-rfE', *paths], env=env)
    passed, failed = junit_counts([junit]) if os.path.exists(junit) else (0, 0)
    if code not in (0, 5) and not failed:
        failed = 1
    tally.add('pytest', ' + '.join(paths), passed, failed, time.time() - start)


def run_scenario(name, env):
    start = time.time()
    log = os.path.join(LOGS, f'molecule-{name}.log')
    # The copy has no .git, from which molecule would find the shared base config by itself.
    code = run(['molecule', '--base-config', '.config/molecule/config.yml', 'test', '-s', name],
               env=env, log=log)
    return name, code, time.time() - start, log


def stage_molecule(tally, env):
    scenarios = sorted(os.path.basename(os.path.dirname(p))
                       for p in glob.glob(os.path.join(COPY, 'molecule/*/molecule.yml')))
    with concurrent.futures.ThreadPoolExecutor(MOLECULE_WORKERS) as pool:
        for name, code, seconds, log in pool.map(lambda s: run_scenario(s, env), scenarios):
            if code:
                with open(log, encoding='utf-8') as handle:
                    print(handle.read()[-15000:], flush=True)
            tally.add('molecule', f'scenario {name}', int(code == 0), int(code != 0), seconds)


def main():
    stages = os.environ.get('FEDIOPS_STAGES', ','.join(ALL_STAGES)).split(',')
    tally = Tally()
    started = time.time()
    sync_copy()
    env = base_env()
    cluster_started = False
    try:
        for stage in ALL_STAGES:
            if stage not in stages:
                continue
            if stage in ('pytest', 'molecule') and not cluster_started and os.path.exists(
                    os.path.join(COPY, 'tests/cluster/localcluster.py')):
                banner('starting the local Kubernetes cluster')
                result = cluster_command('start', env=env)
                print(result.stdout[-3000:], result.stderr[-3000:], flush=True)
                if result.returncode:
                    tally.add('cluster', 'local cluster start', 0, 1, 0)
                    break
                cluster_started = True
                env['FEDIOPS_KUBECONFIG'] = result.stdout.strip().splitlines()[-1]
                env['K8S_AUTH_KUBECONFIG'] = env['FEDIOPS_KUBECONFIG']
            banner(stage)
            globals()[f'stage_{stage}'](tally, env)
    finally:
        if cluster_started:
            cluster_command('stop', env=env)
    passed, failed = tally.totals()
    print(f'\n######## summary ({time.time() - started:.0f} s)')
    for stage, name, ok, bad, seconds in tally.rows:
        print(f'{stage:9} {ok:5} passed {bad:3} failed {seconds:6.0f} s  {name}')
    print(f'{passed} passed, {failed} failed')
    return 1 if failed or not passed else 0


if __name__ == '__main__':
    sys.exit(main())
