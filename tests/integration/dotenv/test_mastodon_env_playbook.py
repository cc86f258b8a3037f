"""mastodon_env through ansible-playbook: bad inputs fail naming the key and change nothing, re-runs are
idempotent and keep the secrets, and no secret value appears in diff or -vvv output.

Each case has its own dest file and its own pytest test, but the cases share four ansible-playbook
runs, made once per module by the `runs` fixture:

  setup  (json)                   every dest file is written from GOOD (one for each bad case, the
                                  idempotence, parser and leak cases), plus the existing-file and
                                  existing_secrets cases;
  bad    (json)                   each bad case (ignore_errors) against the file its setup case wrote;
  diff   (default, --diff)        the idempotence re-run (second run of its dest) and the diff leak scan;
  vvv    (default, -vvv --diff)   the two -vvv leak scans (no_log), with and without diff.

In setup and bad every case is a host of its own (run locally, in parallel: the task's result for
host X is case X's); in diff and vvv every case is a task of its own. The bytes of every file are
recorded between the runs, so each test checks what it checked when it made its own runs.
"""
import json
import re

import pytest

GOOD = {
    'LOCAL_DOMAIN': 'example.social',
    'STREAMING_API_BASE_URL': 'wss://streaming.example.social',
    'DB_HOST': 'db.example.internal',
    'DB_PORT': 25061,
    'DB_NAME': 'mastodon-pool',
    'DB_USER': 'mastodon',
    'DB_PASS': "pw-with-'quote-8c1f",
    'DB_SSLMODE': 'verify-full',
    'PREPARED_STATEMENTS': False,
    'REDIS_URL': 'rediss://default:redis-pw-77d2@redis.example.internal:25061',
    'REDIS_DRIVER': 'ruby',
    'SMTP_PASSWORD': 'smtp $(not run) pw',
}

# (env override, extra_env, key expected in the error)
BAD = [
    ({'REDIS_URI': 'redis://x'}, {}, 'REDIS_URI'),
    ({'LOCAL_DOMAN': 'x.org'}, {}, 'LOCAL_DOMAN'),
    ({'RAILS_ENV': 'production'}, {}, 'RAILS_ENV'),
    ({'NODE_ENV': 'production'}, {}, 'NODE_ENV'),
    ({'PORT': 3000}, {}, 'PORT'),
    ({}, {'BIND': '0.0.0.0'}, 'BIND'),
    ({}, {'SOCKET': '/run/x.sock'}, 'SOCKET'),
    ({'LOCAL_DOMAIN': 'https://example.social'}, {}, 'LOCAL_DOMAIN'),
    ({'LOCAL_DOMAIN': None}, {}, 'LOCAL_DOMAIN'),
    ({'STREAMING_API_BASE_URL': 'https://streaming.example.social'}, {}, 'STREAMING_API_BASE_URL'),
    ({'DB_SSLMODE': 'no-verify'}, {}, 'DB_SSLMODE'),
    ({'PREPARED_STATEMENTS': True}, {}, 'PREPARED_STATEMENTS'),
    ({'REDIS_DRIVER': 'hiredis'}, {}, 'REDIS_DRIVER'),
    ({'DB_PORT': 'five'}, {}, 'DB_PORT'),
    ({'DB_PORT': 70000}, {}, 'DB_PORT'),
    ({'WEB_CONCURRENCY': -1}, {}, 'WEB_CONCURRENCY'),
    ({'AUTHORIZED_FETCH': 'yes'}, {}, 'AUTHORIZED_FETCH'),
    ({'RAILS_LOG_LEVEL': 'verbose'}, {}, 'RAILS_LOG_LEVEL'),
    ({'DEFAULT_LOCALE': 'xx'}, {}, 'DEFAULT_LOCALE'),
    ({'S3_ENABLED': True, 'S3_BUCKET': 'b', 'AWS_ACCESS_KEY_ID': 'k'}, {}, 'AWS_SECRET_ACCESS_KEY'),
    ({'ES_ENABLED': True}, {}, 'ES_HOST'),
    ({'CDN_HOST': 'ftp://cdn.example'}, {}, 'CDN_HOST'),
    ({'DATABASE_URL': 'mysql://u@h/db'}, {}, 'DATABASE_URL'),
    ({'DATABASE_URL': 'postgres://u@h:5432/db?sslmode=no-verify'}, {}, 'DATABASE_URL'),
    ({'DB_PASS': 'a\nb'}, {}, 'DB_PASS'),
    ({'SMTP_PASSWORD': 'it\'s "$x"'}, {}, 'SMTP_PASSWORD'),
    ({}, {'CUSTOM_THING': 'ends in backslash and space \\'}, 'CUSTOM_THING'),
    ({}, {'1BAD': 'x'}, '1BAD'),
    ({'LIMITED_FEDERATION_MODE': True, 'AUTHORIZED_FETCH': False}, {}, 'AUTHORIZED_FETCH'),
    ({'WEB_DOMAIN': 'example.social'}, {}, 'WEB_DOMAIN'),
    ({'NODE_EXTRA_CA_CERTS': 'relative/ca.pem'}, {}, 'NODE_EXTRA_CA_CERTS'),
    ({'VAPID_PUBLIC_KEY': 'not-a-key'}, {}, 'VAPID_PUBLIC_KEY'),
    ({'DB_HOST': 'bad host name'}, {}, 'DB_HOST'),
    # Refused by Mastodon 4.5/4.6 or no longer read (tests/data/mastodon/FACTS.md).
    ({'REDIS_NAMESPACE': 'mastodon'}, {}, 'REDIS_NAMESPACE'),
    ({}, {'REDIS_NAMESPACE': 'mastodon'}, 'REDIS_NAMESPACE'),
    ({'SKIP_POST_DEPLOYMENT_MIGRATIONS': False}, {}, 'SKIP_POST_DEPLOYMENT_MIGRATIONS'),
    ({'LOG_LEVEL': 'silly'}, {}, 'LOG_LEVEL'),
    ({'STATSD_ADDR': 'statsd.example:8125'}, {}, 'STATSD_ADDR'),
    ({'STREAMING_CLUSTER_NUM': 2}, {}, 'STREAMING_CLUSTER_NUM'),
    ({'ENABLE_SIDEKIQ_UNIQUE_JOBS_UI': True}, {}, 'ENABLE_SIDEKIQ_UNIQUE_JOBS_UI'),
    ({'REDIS_URL': 'rediss://default:pa#ss@redis.example.internal:25061'}, {}, 'REDIS_URL'),
]
BAD_IDS = [case[2] + '-%d' % i for i, case in enumerate(BAD)]

# The leak scans: how ansible-playbook is run (run 'diff' or 'vvv'), whether the task registers with
# no_log (as the module documentation requires for tasks that register secrets) and shows a diff.
LEAK_MODES = {
    'diff': dict(run='diff', hide=False, diff=True),       # --diff as operators run it (masked diff printed)
    'vvv': dict(run='vvv', hide=True, diff=False),         # -vvv, task registered under no_log
    'vvv-diff': dict(run='vvv', hide=True, diff=True),     # -vvv --diff, task registered under no_log
}
SECRET_LINES = ('SECRET_KEY_BASE=', 'VAPID_PRIVATE_KEY=', 'DB_PASS=')


def env_task(name, hide=False, diff=None, ignore_errors=True, ref=None):
    """The mastodon_env task of one case; its parameters come from the extra var cases[name], or from
    the variable `ref` (the host variable `case` when every case is a host)."""
    ref = ref or "cases['%s']" % name
    task = {
        'name': name,
        'fediops.mastodon.mastodon_env': {
            'dest': '{{ %s.dest }}' % ref,
            'env': '{{ %s.env }}' % ref,
            'extra_env': '{{ %s.extra_env | default({}) }}' % ref,
            'existing_secrets': '{{ %s.existing | default({}) }}' % ref,
            'backup': '{{ %s.backup | default(false) }}' % ref,
        },
        'register': 'out',
        'no_log': hide,
    }
    if ignore_errors:
        task['ignore_errors'] = True
    if diff is not None:
        task['diff'] = diff
    return task


def show_task(name):
    """Writes the registered result beside dest, for runs with the human-readable callback."""
    return {
        'name': 'show %s' % name,
        'ansible.builtin.copy': {'content': '{{ out | to_json }}', 'dest': "{{ cases['%s'].dest }}.result.json" % name,
                                 'mode': '0600'},
        'diff': False,
    }


def playbook(tasks, hosts='localhost'):
    """A one-play playbook (JSON is YAML) running the tasks on localhost (or on every case's host)."""
    return json.dumps([{'hosts': hosts, 'gather_facts': False, 'tasks': tasks}], indent=1)


def task_sections(output):
    """Human-readable callback output split per task: {task name: text up to the next TASK/PLAY header}."""
    sections = {}
    parts = re.split(r'^(TASK \[.*\]|PLAY \[.*\]|PLAY RECAP) \*+$', output, flags=re.M)
    for header, text in zip(parts[1::2], parts[2::2]):
        match = re.match(r'TASK \[(.*)\]$', header)
        if match:
            sections[match.group(1)] = sections.get(match.group(1), '') + text
    return sections


def secret_values(content):
    """The secret values of an existing file: those the bad runs must not print."""
    found = []
    for line in content.decode().splitlines():
        if line.startswith(SECRET_LINES):
            found.append(line.split('=', 1)[1].strip('"\''))
    return found


class Runs(object):
    """The four runs, their per-case parameters and the file contents recorded between the runs.

    The setup and bad runs have a host per case (run locally, in parallel), so the result of case X
    is the 'env' task's result for host X there; in the diff and vvv runs each case is a task of its own.
    """

    FORKS = 8
    HOST_RUNS = ('setup', 'bad')

    def __init__(self, run_playbook, directory):
        self.run_playbook = run_playbook
        self.directory = directory
        self.cases = {}
        self.results = {}
        self.files = {}
        self.setup_names = []

    def dest(self, name):
        path = self.directory / name
        path.mkdir()
        return path / '.env.production'

    def run(self, name, tasks, **kwargs):
        extra_vars = {'cases': {k: dict(v, dest=str(v['dest'])) for k, v in self.cases.items()}}
        self.results[name] = self.run_playbook(playbook(tasks), extra_vars=extra_vars, **kwargs)
        return self.results[name]

    def run_hosts(self, name, names, **kwargs):
        """Run the mastodon_env task once on every case of `names`, each case a host of its own."""
        cases = {k: dict(self.cases[k], dest=str(self.cases[k]['dest'])) for k in names}
        self.results[name] = self.run_playbook(playbook([env_task('env', ref='case')], hosts='all'), cases=cases,
                                               forks=self.FORKS, **kwargs)
        return self.results[name]

    def result(self, label, name):
        """The result of case `name` in run `label`."""
        if label in self.HOST_RUNS:
            return self.results[label].result('env', host=name)
        return self.results[label].result(name)

    def output(self, label, name):
        """Case `name`'s part of the json output of run `label` (setup or bad)."""
        return self.results[label].task_output('env', host=name)

    def snapshot(self, label, name):
        self.files[(label, name)] = self.cases[name]['dest'].read_bytes()


@pytest.fixture(scope='module')
def runs(run_playbook_module, tmp_path_factory):
    batch = Runs(run_playbook_module, tmp_path_factory.mktemp('dotenv-cases'))
    cases = batch.cases

    # -- setup: every file the later runs work on, and the one-run cases -------------------------
    for index in range(len(BAD)):
        cases['good-%d' % index] = {'dest': batch.dest('bad-%d' % index), 'env': GOOD}
    for name in ['rerun', 'parsers'] + ['leak-' + mode for mode in LEAK_MODES]:
        cases[name] = {'dest': batch.dest(name), 'env': GOOD}
    cases['existing-file'] = {'dest': batch.dest('existing-file'), 'env': GOOD, 'backup': True}
    cases['existing-file']['dest'].write_text(
        "# hand written\nSECRET_KEY_BASE=abc123keep\nexport ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY='keep-primary'\n"
        'LOCAL_DOMAIN=old.example\n')
    cases['existing-secrets'] = {'dest': batch.dest('existing-secrets'), 'env': GOOD,
                                 'existing': {'SECRET_KEY_BASE': 'from-cluster-secret', 'UNRELATED': 'x'}}
    batch.setup_names = list(cases)
    batch.run_hosts('setup', batch.setup_names)
    for name in cases:
        batch.snapshot('setup', name)

    # -- bad: each bad input against the file its good-N task wrote --------------------------------
    for index, (override, extra_env, dummy) in enumerate(BAD):
        env = dict(GOOD)
        env.update(override)
        cases['bad-%d' % index] = {'dest': cases['good-%d' % index]['dest'], 'env': env, 'extra_env': extra_env}
    batch.run_hosts('bad', ['bad-%d' % index for index in range(len(BAD))])

    # -- diff and vvv: the second run of 'rerun', and the leak scans ----------------------------------
    # the leak cases change a setting so that there is a diff, and pass the file's secrets back in
    for mode in LEAK_MODES:
        base = batch.result('setup', 'leak-' + mode)
        cases['leak-%s-changed' % mode] = {'dest': cases['leak-' + mode]['dest'], 'env': dict(GOOD, DB_NAME='other-pool'),
                                           'existing': base.get('secret_env', {})}
    diff_tasks = [env_task('rerun', ignore_errors=False), show_task('rerun')]
    vvv_tasks = []
    for mode, how in LEAK_MODES.items():
        task = env_task('leak-%s-changed' % mode, hide=how['hide'], diff=how['diff'], ignore_errors=False)
        (diff_tasks if how['run'] == 'diff' else vvv_tasks).append(task)
    batch.run('diff', diff_tasks, diff=True, callback='default')
    batch.run('vvv', vvv_tasks, diff=True, verbosity=3, callback='default')
    return batch


def test_enough_bad_cases():
    assert len(BAD) >= 25


def test_batch_ran_every_case(runs):
    """Every case has its own result (a case the run skipped would leave a test without evidence)."""
    for label, names, ignored in (('setup', runs.setup_names, 0), ('bad', ['bad-%d' % i for i in range(len(BAD))], 1)):
        res = runs.results[label]
        assert res.returncode == 0, (label, res.stdout[-3000:], res.stderr[-3000:])
        assert sorted(res.stats) == sorted(names), label
        for name in names:
            assert runs.result(label, name) is not None
            assert res.stats[name]['ignored'] == ignored, (label, name)


@pytest.mark.parametrize('index', range(len(BAD)), ids=BAD_IDS)
def test_bad_input_fails_naming_key_and_changes_nothing(runs, index):
    first = runs.result('setup', 'good-%d' % index)
    assert not first.get('failed') and first['changed'], first.get('msg')
    before = runs.files[('setup', 'good-%d' % index)]
    key = BAD[index][2]
    res = runs.results['bad']
    task = runs.result('bad', 'bad-%d' % index)
    assert task.get('failed'), task
    assert key in task['msg'], task['msg']
    assert key in task['keys']
    assert runs.cases['bad-%d' % index]['dest'].read_bytes() == before
    # no secret of the existing file leaks into the error: the case's own output (its task's part of the
    # json output, and stderr); test_bad_run_output_has_no_secret scans the whole output for every file's.
    values = secret_values(before)
    assert len(values) == 3, values
    for value in values:
        assert value not in runs.output('bad', 'bad-%d' % index) and value not in res.stderr


def test_bad_run_output_has_no_secret(runs):
    res = runs.results['bad']
    output = res.stdout + res.stderr
    values = set()
    for index in range(len(BAD)):
        values.update(secret_values(runs.files[('setup', 'good-%d' % index)]))
    assert len(values) > 2 * len(BAD)  # each file has its own generated secrets
    leaked = [index for index in range(len(BAD))
              if any(value in output for value in secret_values(runs.files[('setup', 'good-%d' % index)]))]
    assert not leaked, [BAD_IDS[index] for index in leaked]


def test_rerun_is_idempotent_and_keeps_secrets(runs):
    one = runs.result('setup', 'rerun')
    assert not one.get('failed'), one.get('msg')
    assert one['changed'] and len(one['generated']) == 6
    assert len(one['secrets']['SECRET_KEY_BASE']) == 128
    content = runs.files[('setup', 'rerun')]
    second = task_sections(runs.results['diff'].stdout)['rerun']
    assert 'ok: [localhost]' in second, second[-3000:]
    dest = runs.cases['rerun']['dest']
    two = json.loads(dest.with_name(dest.name + '.result.json').read_text())
    assert two['changed'] is False and two['generated'] == []
    assert two['secrets'] == one['secrets'] and two['checksum'] == one['checksum']
    assert dest.read_bytes() == content
    assert oct(dest.stat().st_mode & 0o777) == '0o600'


def test_existing_file_keeps_its_secrets(runs):
    out = runs.result('setup', 'existing-file')
    assert not out.get('failed'), out.get('msg')
    assert out['secrets']['SECRET_KEY_BASE'] == 'abc123keep'
    assert out['secrets']['ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'] == 'keep-primary'
    assert 'SECRET_KEY_BASE' not in out['generated'] and out['backup_file']
    assert 'SECRET_KEY_BASE=abc123keep\n' in runs.files[('setup', 'existing-file')].decode()


def test_existing_secrets_option_wins_over_generation(runs):
    out = runs.result('setup', 'existing-secrets')
    assert not out.get('failed'), out.get('msg')
    assert out['secrets']['SECRET_KEY_BASE'] == 'from-cluster-secret'
    assert 'SECRET_KEY_BASE' not in out['generated']


def test_file_is_read_identically_by_real_parsers(runs, parsers):
    out = runs.result('setup', 'parsers')
    assert not out.get('failed'), out.get('msg')
    dest = runs.cases['parsers']['dest']
    assert dest.read_bytes() == runs.files[('setup', 'parsers')]
    expected = dict(out['config_env'], **out['secret_env'])
    assert parsers.ruby(dest) == expected
    assert parsers.node(dest) == expected


@pytest.mark.parametrize('mode', sorted(LEAK_MODES))
def test_no_secret_in_diff_or_vvv_output(runs, mode):
    how = LEAK_MODES[mode]
    first = runs.result('setup', 'leak-' + mode)
    assert not first.get('failed') and first['changed'], first.get('msg')
    secrets = first['secret_env']
    assert secrets
    values = list(secrets.values()) + [GOOD['DB_PASS'], 'redis-pw-77d2', GOOD['SMTP_PASSWORD']]
    res = runs.results[how['run']]
    assert res.returncode == 0, res.stdout[-3000:]
    # the case's own output (its task's part of stdout, and stderr); test_leak_runs_output_has_no_secret
    # scans the whole output of both runs
    section = task_sections(res.stdout)['leak-%s-changed' % mode]
    assert 'changed: [localhost]' in section, section[-3000:]
    if how['diff'] and not how['hide']:
        assert '+DB_NAME=other-pool' in section and '=********' in section
    output = section + res.stderr
    leaked = [k for k, v in list(secrets.items()) + [('input', v) for v in values] if v in output]
    assert not leaked, (mode, leaked)
    assert b'DB_NAME=other-pool' in runs.cases['leak-' + mode]['dest'].read_bytes()


def test_leak_runs_output_has_no_secret(runs):
    values = [('input', GOOD['DB_PASS']), ('input', 'redis-pw-77d2'), ('input', GOOD['SMTP_PASSWORD'])]
    for mode in sorted(LEAK_MODES):
        values += [(mode + ' ' + k, v) for k, v in runs.result('setup', 'leak-' + mode)['secret_env'].items()]
    for name in ('diff', 'vvv'):
        output = runs.results[name].stdout + runs.results[name].stderr
        leaked = [k for k, v in values if v in output]
        assert not leaked, (name, leaked)
