"""mastodon_env through ansible-playbook: bad inputs fail naming the key and change nothing, re-runs are
idempotent and keep the secrets, and no secret value appears in diff or -vvv output."""
import json

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
PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: env
      fediops.mastodon.mastodon_env:
        dest: "{{ dest }}"
        env: "{{ env }}"
        extra_env: "{{ extra_env | default({}) }}"
        existing_secrets: "{{ existing | default({}) }}"
        backup: "{{ backup | default(false) }}"
      register: out
      no_log: "{{ hide | default(false) }}"
    - name: show
      ansible.builtin.copy:
        content: "{{ out | to_json }}"
        dest: "{{ dest }}.result.json"
        mode: '0600'
      diff: false
      when: not (hide | default(false))
'''

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
]


@pytest.fixture
def dest(tmp_path):
    return tmp_path / '.env.production'


def _run(run_playbook, dest, env=None, **extra):
    extra_vars = {'dest': str(dest), 'env': env if env is not None else GOOD}
    extra_vars.update(extra)
    verbosity = extra_vars.pop('verbosity', 0)
    diff = extra_vars.pop('diff', False)
    callback = extra_vars.pop('callback', 'json')
    return run_playbook(PLAYBOOK, extra_vars=extra_vars, verbosity=verbosity, diff=diff, callback=callback)


def _result(dest):
    return json.loads(dest.with_name(dest.name + '.result.json').read_text())


def test_enough_bad_cases():
    assert len(BAD) >= 25


@pytest.mark.parametrize('override,extra_env,key', BAD, ids=[case[2] + '-%d' % i for i, case in enumerate(BAD)])
def test_bad_input_fails_naming_key_and_changes_nothing(run_playbook, dest, override, extra_env, key):
    first = _run(run_playbook, dest)
    assert first.returncode == 0, first.stdout[-3000:]
    before = dest.read_bytes()
    env = dict(GOOD)
    env.update(override)
    res = _run(run_playbook, dest, env=env, extra_env=extra_env)
    assert res.returncode != 0
    task = res.result('env')
    assert task.get('failed'), task
    assert key in task['msg'], task['msg']
    assert key in task['keys']
    assert dest.read_bytes() == before
    # no secret of the existing file leaks into the error
    for line in before.decode().splitlines():
        if line.startswith(('SECRET_KEY_BASE=', 'VAPID_PRIVATE_KEY=', 'DB_PASS=')):
            assert line.split('=', 1)[1].strip('"\'') not in res.stdout


def test_rerun_is_idempotent_and_keeps_secrets(run_playbook, dest):
    first = _run(run_playbook, dest)
    assert first.returncode == 0, first.stdout[-3000:]
    one = _result(dest)
    assert one['changed'] and len(one['generated']) == 6
    assert len(one['secrets']['SECRET_KEY_BASE']) == 128
    content = dest.read_bytes()
    second = _run(run_playbook, dest)
    assert second.returncode == 0
    two = _result(dest)
    assert two['changed'] is False and two['generated'] == []
    assert two['secrets'] == one['secrets'] and two['checksum'] == one['checksum']
    assert dest.read_bytes() == content
    assert oct(dest.stat().st_mode & 0o777) == '0o600'


def test_existing_file_keeps_its_secrets(run_playbook, dest):
    dest.write_text("# hand written\nSECRET_KEY_BASE=abc123keep\nexport ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY='keep-primary'\n"
                    'LOCAL_DOMAIN=old.example\n')
    res = _run(run_playbook, dest, backup=True)
    assert res.returncode == 0, res.stdout[-3000:]
    out = _result(dest)
    assert out['secrets']['SECRET_KEY_BASE'] == 'abc123keep'
    assert out['secrets']['ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'] == 'keep-primary'
    assert 'SECRET_KEY_BASE' not in out['generated'] and out['backup_file']
    assert 'SECRET_KEY_BASE=abc123keep\n' in dest.read_text()


def test_existing_secrets_option_wins_over_generation(run_playbook, dest):
    res = _run(run_playbook, dest, existing={'SECRET_KEY_BASE': 'from-cluster-secret', 'UNRELATED': 'x'})
    assert res.returncode == 0, res.stdout[-3000:]
    out = _result(dest)
    assert out['secrets']['SECRET_KEY_BASE'] == 'from-cluster-secret'
    assert 'SECRET_KEY_BASE' not in out['generated']


def test_file_is_read_identically_by_real_parsers(run_playbook, dest, parsers):
    res = _run(run_playbook, dest)
    assert res.returncode == 0
    out = _result(dest)
    expected = dict(out['config_env'], **out['secret_env'])
    assert parsers.ruby(dest) == expected
    assert parsers.node(dest) == expected


def test_no_secret_in_diff_or_vvv_output(run_playbook, dest):
    first = _run(run_playbook, dest)
    assert first.returncode == 0
    secrets = _result(dest)['secret_env']
    values = list(secrets.values()) + [GOOD['DB_PASS'], 'redis-pw-77d2', GOOD['SMTP_PASSWORD']]
    # change a setting so that there is a diff; the task registers with no_log as documented
    env = dict(GOOD, DB_NAME='other-pool')
    # --diff as operators run it (the diff is printed, masked); -vvv with the task registered under
    # no_log: true, as the module documentation requires for tasks that register secrets.
    for kwargs in ({'diff': True, 'callback': 'default'}, {'verbosity': 3, 'callback': 'default', 'hide': True},
                   {'verbosity': 3, 'diff': True, 'callback': 'default', 'hide': True}):
        res = _run(run_playbook, dest, env=env, existing=secrets, **kwargs)
        assert res.returncode == 0, res.stdout[-3000:]
        output = res.stdout + res.stderr
        if kwargs.get('diff') and not kwargs.get('hide'):
            assert '+DB_NAME=other-pool' in output and '=********' in output
        leaked = [k for k, v in list(secrets.items()) + [('input', v) for v in values] if v in output]
        assert not leaked, (kwargs, leaked)
