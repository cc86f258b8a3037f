"""Checks the converged node through testinfra (docker exec), proving the harness end to end."""


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
