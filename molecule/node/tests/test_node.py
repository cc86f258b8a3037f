"""Checks the converged node through testinfra (docker exec), proving the harness end to end."""
import os


def test_mastodon_user(host):
    user = host.user('mastodon')
    assert user.exists
    assert user.uid == 991
    assert user.group == 'mastodon'


def test_config_directory(host):
    directory = host.file('/opt/mastodon/live')
    assert directory.is_directory
    assert directory.user == 'mastodon'
    assert directory.mode == 0o750


def test_systemd_is_pid1(host):
    assert host.file('/proc/1/comm').content_string.strip() == 'systemd'


CA_PATH = '/opt/mastodon/live/db-ca.crt'
ENV_PATH = '/opt/mastodon/live/.env.production'


def _env_lines(host):
    return dict(line.split('=', 1) for line in host.file(ENV_PATH).content_string.splitlines()
                if line and not line.startswith('#') and '=' in line)


def test_env_file_mode_and_owner(host):
    env_file = host.file(ENV_PATH)
    assert env_file.is_file
    assert env_file.mode == 0o600
    assert env_file.user == 'mastodon'
    assert env_file.group == 'mastodon'


def test_env_file_content(host):
    env = _env_lines(host)
    assert env['LOCAL_DOMAIN'].strip('\'"') == 'node.example.test'
    assert env['DB_HOST'].strip('\'"') == 'db.example.test'
    assert env['DB_PORT'].strip('\'"') == '25061'
    assert env['PREPARED_STATEMENTS'].strip('\'"') == 'false'
    assert env['DB_SSLMODE'].strip('\'"') == 'verify-full'
    assert env['PGSSLROOTCERT'].strip('\'"') == CA_PATH
    assert env['REDIS_DRIVER'].strip('\'"') == 'ruby'
    assert env['SECRET_KEY_BASE'].strip('\'"').startswith('986449b60dc33ca6')
    assert 'NODE_EXTRA_CA_CERTS' not in env


def test_ca_file(host):
    ca_file = host.file(CA_PATH)
    assert ca_file.is_file
    assert ca_file.mode == 0o644
    assert ca_file.user == 'mastodon'
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'files', 'db-ca.pem'),
              encoding='utf-8') as handle:
        assert ca_file.content_string.strip() == handle.read().strip()
