# -*- coding: utf-8 -*-
from __future__ import annotations

import base64
import string

import pytest

from ansible_collections.fediops.mastodon.plugins.module_utils import _mastodon_config as config


def _complete(**extra):
    secrets, dummy = config.fill_secrets({})
    env = {'LOCAL_DOMAIN': 'example.social'}
    env.update(secrets)
    env.update(extra)
    return env


def test_generated_secret_formats():
    secrets, generated = config.fill_secrets({}, generate_otp=True)
    assert len(secrets['SECRET_KEY_BASE']) == 128 and all(c in string.hexdigits for c in secrets['SECRET_KEY_BASE'])
    assert len(secrets['OTP_SECRET']) == 128
    private = base64.urlsafe_b64decode(secrets['VAPID_PRIVATE_KEY'])
    public = base64.urlsafe_b64decode(secrets['VAPID_PUBLIC_KEY'])
    assert len(private) == 32 and len(public) == 65 and public[:1] == b'\x04'
    assert secrets['VAPID_PRIVATE_KEY'].endswith('=') and len(secrets['VAPID_PUBLIC_KEY']) == 88
    assert config.vapid_public_from_private(secrets['VAPID_PRIVATE_KEY']) == secrets['VAPID_PUBLIC_KEY']
    for key in ('ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY', 'ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT',
                'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'):
        assert len(secrets[key]) == 32 and secrets[key].isalnum()
    assert sorted(generated) == sorted(config.GENERATED)


def test_fill_secrets_never_replaces():
    known = {'SECRET_KEY_BASE': 'keep', 'ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY': 'keep2'}
    secrets, generated = config.fill_secrets(known)
    assert secrets['SECRET_KEY_BASE'] == 'keep' and secrets['ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY'] == 'keep2'
    assert 'SECRET_KEY_BASE' not in generated and 'OTP_SECRET' not in secrets
    again, generated = config.fill_secrets(secrets)
    assert again == secrets and generated == []


def test_no_generation():
    secrets, generated = config.fill_secrets({}, generate=False)
    assert secrets == {} and generated == []
    errors, dummy = config.validate({'LOCAL_DOMAIN': 'example.social'})
    assert 'SECRET_KEY_BASE' in [e.key for e in errors]


def test_valid_config_passes():
    env = _complete(DB_PORT='25061', PREPARED_STATEMENTS='false', REDIS_URL='rediss://u:p@r.example:25061',
                    REDIS_DRIVER='ruby', STREAMING_API_BASE_URL='wss://s.example.social')
    errors, warnings = config.validate(env)
    assert errors == [] and warnings == []


def test_unknown_key_suggestion():
    values, errors = config.normalise({'REDIS_URI': 'redis://x'})
    assert values == {} and errors[0].key == 'REDIS_URI' and 'did you mean REDIS_URL?' in str(errors[0])
    values, errors = config.normalise({}, {'REDIS_URI': 'redis://x'})
    assert errors == [] and values == {'REDIS_URI': 'redis://x'}


@pytest.mark.parametrize('key', sorted(config.FORBIDDEN))
def test_forbidden_keys(key):
    dummy, errors = config.normalise({key: 'x'})
    assert errors[0].key == key


@pytest.mark.parametrize('extra,key', [
    ({'REDIS_URL': 'rediss://r.example:1'}, 'REDIS_DRIVER'),
    ({'DB_SSLMODE': 'no-verify'}, 'DB_SSLMODE'),
    ({'DB_PORT': '25061'}, 'PREPARED_STATEMENTS'),
    ({'DATABASE_URL': 'postgres://u:p@h:25061/pool'}, 'PREPARED_STATEMENTS'),
    ({'STREAMING_API_BASE_URL': 'https://s.example'}, 'STREAMING_API_BASE_URL'),
    ({'S3_ENABLED': 'true'}, 'S3_BUCKET'),
    ({'DB_POOL': '0'}, 'DB_POOL'),
    ({'SINGLE_USER_MODE': 'TRUE'}, 'SINGLE_USER_MODE'),
    ({'VAPID_PUBLIC_KEY': config.fill_secrets({})[0]['VAPID_PUBLIC_KEY']}, 'VAPID_PUBLIC_KEY'),
])
def test_validation_errors(extra, key):
    errors, dummy = config.validate(_complete(**extra))
    assert key in [e.key for e in errors]


def test_explicit_pgbouncer_flag():
    errors, dummy = config.validate(_complete(DB_PORT='5432'), pgbouncer=True)
    assert [e.key for e in errors] == ['PREPARED_STATEMENTS']
    errors, dummy = config.validate(_complete(DB_PORT='25061'), pgbouncer=False)
    assert errors == []


def test_to_text():
    assert config.to_text('A', True) == 'true' and config.to_text('A', 5) == '5'
    with pytest.raises(config.ConfigError):
        config.to_text('A', ['x'])


def test_split_and_mask():
    env = _complete(DB_PASS='pw', REDIS_URL='redis://:pw2@h:6379', DB_HOST='db.example', MY_API_TOKEN='t')
    secret_env, config_env = config.split_env(env)
    assert {'DB_PASS', 'REDIS_URL', 'SECRET_KEY_BASE', 'MY_API_TOKEN'} <= set(secret_env)
    assert 'DB_HOST' in config_env and 'LOCAL_DOMAIN' in config_env
    text = config.render(env)
    masked = config.masked(text, set(secret_env))
    assert env['SECRET_KEY_BASE'] not in masked and 'SECRET_KEY_BASE=********' in masked
    assert 'DB_HOST=db.example' in masked
    assert config.checksum(text) == config.checksum(config.render(dict(env)))


def test_component_warning():
    errors, warnings = config.validate(_complete(SIDEKIQ_CONCURRENCY='5'), components=['streaming'])
    assert errors == [] and any('SIDEKIQ_CONCURRENCY' in w for w in warnings)
