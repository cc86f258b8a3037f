# -*- coding: utf-8 -*-
from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given, settings, strategies as st

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
    errors, dummy = config.validate(_complete(**{key: 'x'}))
    assert [e.key for e in errors] == [key]


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


# Versions -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    ('v4.7.6', ('v4.7.6', '4.7')),
    ('v4.6.5', ('v4.6.5', '4.6')),
    ('v4.5.15', ('v4.5.15', '4.5')),
    ('v4.5.2', ('v4.5.2', '4.5')),
    ('v4.7.9', ('v4.7.9', '4.7')),
    ('v4.6.5@sha256:' + 'ab' * 32, ('v4.6.5@sha256:' + 'ab' * 32, '4.6')),
    ('v4.7.6@sha256:' + '0f' * 32, ('v4.7.6@sha256:' + '0f' * 32, '4.7')),
])
def test_parse_version_accepts_supported_lines(text, expected):
    assert config.parse_version(text) == expected


@pytest.mark.parametrize('text', ['v4.4.9', 'v4.4.27', 'v4.3.0', 'v4.8.0', 'v5.0.0', 'v4.4.27@sha256:' + 'ab' * 32])
def test_parse_version_refuses_other_lines(text):
    with pytest.raises(config.ConfigError) as info:
        config.parse_version(text)
    message = str(info.value)
    assert message.startswith('config_mastodon_version: ') and '4.5' in message and '4.6' in message
    assert '4.7 (newest known v4.7.6)' in message
    assert 'config_allow_unsupported_version: true' in message
    assert config.parse_version(text, allow_unsupported=True) == (text, text[1:4])


def test_line_4_4_is_refused_with_its_end_of_support():
    """Mastodon supports 4.4 until 2026-12-17 (SECURITY.md); this collection no longer deploys it."""
    with pytest.raises(config.ConfigError) as info:
        config.parse_version('v4.4.27')
    assert info.value.key == 'config_mastodon_version'
    assert 'Mastodon 4.4 is not a supported line' in info.value.reason and '2026-12-17' in info.value.reason


@pytest.mark.parametrize('text', ['4.6.5', 'v4.6', 'latest', 'v4.6.5@sha256:abc', 'v4.6.5 ', None])
def test_parse_version_refuses_other_forms(text):
    with pytest.raises(config.ConfigError) as info:
        config.parse_version(text)
    assert 'vX.Y.Z' in str(info.value)


def test_parse_version_override_admits_any_image_tag():
    assert config.parse_version('fail', allow_unsupported=True) == ('fail', None)
    with pytest.raises(config.ConfigError):
        config.parse_version('bad tag', allow_unsupported=True)


def test_default_version_is_the_newest_line():
    assert config.DEFAULT_VERSION == 'v4.7.6' == config.SUPPORTED_LINES['4.7']
    assert config.parse_version(config.DEFAULT_VERSION) == ('v4.7.6', '4.7')
    assert config.LINE_ORDER[-1] == '4.7'


def test_older_patch_is_accepted_with_a_warning_naming_the_newest():
    errors, warnings = config.validate(_complete(), version='v4.5.2')
    assert errors == [] and any('v4.5.20' in w and 'v4.5.2 ' in w for w in warnings)
    errors, warnings = config.validate(_complete(), version='v4.7.2@sha256:' + 'ab' * 32)
    assert errors == [] and len(warnings) == 1 and 'v4.7.2 is older than v4.7.6' in warnings[0]
    assert 'sha256' not in warnings[0]
    for version in ('v4.5.20', 'v4.6.9', 'v4.7.6', config.DEFAULT_VERSION):
        assert config.validate(_complete(), version=version) == ([], [])


def test_newer_patch_than_the_newest_known_is_accepted_without_warning():
    """The newest patch cannot be known offline for long: a newer one of a supported line is fine."""
    for version in ('v4.7.9', 'v4.6.12', 'v4.5.21', 'v4.7.10@sha256:' + 'cd' * 32):
        assert config.version_warnings(version) == []
        assert config.validate(_complete(), version=version) == ([], [])


def test_unsupported_line_is_checked_against_the_nearest_line():
    warnings = config.version_warnings('v4.8.1')
    assert warnings == ['Mastodon 4.8 is not a supported line: the settings are checked against Mastodon v4.7.6']
    errors, dummy = config.validate(_complete(ES_QUERY_TIMEOUT='5s'), version='v4.8.1')
    assert errors == []


def test_version_helpers_for_other_checks():
    assert config.line_of('v4.7.6@sha256:' + 'ab' * 32) == '4.7' and config.line_of('latest') is None
    assert config.zero_downtime_floor('4.7') == ('20241007071624', '4.3.0')
    assert config.zero_downtime_floor('4.6') == config.zero_downtime_floor('4.5') == ('20230907150100', '4.2.0')
    assert config.LINE_ORDER == ('4.5', '4.6', '4.7')


# Keys refused or read by one line only ------------------------------------------------------------------

@pytest.mark.parametrize('key', sorted(config.REJECTED))
@pytest.mark.parametrize('version', sorted(config.SUPPORTED_LINES.values()))
def test_rejected_keys_name_key_version_and_remedy(key, version):
    """deprecations.rb:3-17 (REDIS_NAMESPACE aborts the boot), lib/mastodon/database.rb:31 (any value of
    SKIP_POST_DEPLOYMENT_MIGRATIONS skips), the rest not read by 4.5.15/4.6.5 (reference README)."""
    values, errors = config.normalise({key: 'x'})
    assert errors == []
    errors, dummy = config.validate(_complete(**values), version=version)
    assert [e.key for e in errors] == [key]
    assert 'Mastodon %s' % version[1:4] in errors[0].reason and len(errors[0].reason) > 60
    values, errors = config.normalise({}, {key: 'x'})
    errors, dummy = config.validate(_complete(**values), version=version)
    assert [e.key for e in errors] == [key]


def test_skip_post_deployment_migrations_false_is_refused_too():
    errors, dummy = config.validate(_complete(SKIP_POST_DEPLOYMENT_MIGRATIONS='false'))
    assert errors[0].key == 'SKIP_POST_DEPLOYMENT_MIGRATIONS' and 'ANY value' in errors[0].reason


@pytest.mark.parametrize('key,value,lines', [
    ('ENABLE_SIDEKIQ_UNIQUE_JOBS_UI', 'true', ('4.5',)),
    ('MASTODON_USE_LIBVIPS', 'true', ('4.5',)),
    ('MAGICK_CONFIGURE_PATH', '/etc/im', ('4.5',)),
    ('DISABLE_EMAIL_SUBSCRIPTIONS', 'true', ('4.6', '4.7')),
    ('DONATION_CAMPAIGNS_URL', 'https://donate.example', ('4.6', '4.7')),
    ('DONATION_CAMPAIGNS_ENVIRONMENT', 'production', ('4.6', '4.7')),
    ('ES_QUERY_TIMEOUT', '10s', ('4.7',)),
])
def test_keys_of_some_lines(key, value, lines):
    """Names only in some catalogues of tests/data/mastodon (its README): accepted for those lines alone."""
    for line, version in config.SUPPORTED_LINES.items():
        errors, dummy = config.validate(_complete(**{key: value}), version=version)
        if line in lines:
            assert errors == []
        else:
            assert [e.key for e in errors] == [key] and lines[0] in errors[0].reason


def test_key_of_a_newer_line_names_the_version_to_set():
    errors, dummy = config.validate(_complete(ES_QUERY_TIMEOUT='10s'), version='v4.6.9')
    assert errors[0].reason == 'is read only from Mastodon 4.7 on; set config_mastodon_version to v4.7.6 or remove it'


@pytest.mark.parametrize('key', ['CAS_HOST', 'SAML_IDP_CERT', 'OIDC_CLIENT_AUTH_METHOD', 'LDAP_MAIL',
                                 'PAM_DEFAULT_SERVICE', 'MASTODON_PROMETHEUS_EXPORTER_WEB_DETAILED_METRICS',
                                 'QUERY_LOG_TAGS_ENABLED', 'PROXY_PROTO_V1', 'S3_CLOUDFRONT_HOST', 'BACKTRACE',
                                 'CACHE_REDIS_SENTINEL_USERNAME', 'SIDEKIQ_REDIS_SENTINEL_PASSWORD'])
def test_settings_mastodon_reads_are_accepted(key):
    """They were refused as unknown: every key a line reads is accepted (tests/integration/schema)."""
    values, errors = config.normalise({key: 'x'})
    assert errors == []
    for version in config.SUPPORTED_LINES.values():
        assert config.validate(_complete(**values), version=version)[0] == []
        assert key in config.component_env(values, 'rails', version)
        assert key not in config.component_env(values, 'streaming', version)


def test_redis_sentinel_credentials_go_to_rails_and_streaming():
    """lib/mastodon/redis_configuration.rb:72-73 (Rails) and streaming/redis.js:55-56 read the unprefixed pair."""
    env = {'REDIS_SENTINEL_USERNAME': 'u', 'REDIS_SENTINEL_PASSWORD': 'p'}
    assert config.component_env(env, 'rails') == env == config.component_env(env, 'streaming')
    secret_env, config_env = config.split_env(dict(env, CACHE_REDIS_SENTINEL_PASSWORD='p'))
    assert set(secret_env) == {'REDIS_SENTINEL_PASSWORD', 'CACHE_REDIS_SENTINEL_PASSWORD'}


@pytest.mark.parametrize('key', sorted(config.NOT_FOR_PRODUCTION))
def test_keys_not_for_production_are_refused_with_the_reason(key):
    values, errors = config.normalise({key: 'x'})
    assert errors == [] and values == {key: 'x'}
    errors, dummy = config.validate(_complete(**values))
    assert [e.key for e in errors] == [key] and config.NOT_FOR_PRODUCTION[key] in errors[0].reason
    assert key not in config.component_env(values, 'rails')


def test_deprecated_names_are_accepted_with_a_warning():
    errors, warnings = config.validate(_complete(WHITELIST_MODE='true'))
    assert errors == [] and warnings == ['WHITELIST_MODE is the old name of LIMITED_FEDERATION_MODE (Mastodon warns '
                                         'about it at boot): rename it']


def test_role_owned_keys_name_their_variable():
    assert config.ROLE_OWNED_KEYS['WEB_CONCURRENCY'][0] == 'web_concurrency'
    assert config.ROLE_OWNED_KEYS['MAX_THREADS'][0] == 'web_max_threads'
    assert set(config.ROLE_OWNED_KEYS).isdisjoint(config.CONTAINER_SET_KEYS)


@pytest.mark.parametrize('level', config.PINO_LEVELS)
def test_log_level_takes_pino_levels(level):
    """streaming/logging.js:107-108."""
    assert config.validate(_complete(LOG_LEVEL=level))[0] == []


@pytest.mark.parametrize('level', ['silly', 'verbose', 'http', 'warning', 'INFO'])
def test_log_level_refuses_npmlog_levels(level):
    errors, dummy = config.validate(_complete(LOG_LEVEL=level))
    assert errors[0].key == 'LOG_LEVEL' and 'pino' in errors[0].reason


@pytest.mark.parametrize('locale', ['be', 'ckb', 'ia', 'ie', 'af', 'an', 'bs', 'kw', 'la', 'sa', 'szl', 'ug',
                                    'fr-CA', 'zh-TW', 'en-GB'])
def test_locales_of_every_line(locale):
    """config/initializers/i18n.rb available_locales."""
    for version in config.SUPPORTED_LINES.values():
        assert config.validate(_complete(DEFAULT_LOCALE=locale), version=version)[0] == []


def test_locale_nan_tw_from_4_6_and_unknown_locales():
    assert config.validate(_complete(DEFAULT_LOCALE='nan-TW'), version='v4.6.5')[0] == []
    assert config.validate(_complete(DEFAULT_LOCALE='nan-TW'), version='v4.7.6')[0] == []
    for locale, version in (('nan-TW', 'v4.5.15'), ('fr-QC', 'v4.6.5'), ('xx', 'v4.6.5')):
        errors, dummy = config.validate(_complete(DEFAULT_LOCALE=locale), version=version)
        assert errors[0].key == 'DEFAULT_LOCALE' and version[1:4] in errors[0].reason


# Components -----------------------------------------------------------------------------------------------

# streaming/ reads these (database.js, redis.js, logging.js, index.js); node reads NODE_EXTRA_CA_CERTS.
STREAMING_READS = {
    'DATABASE_URL', 'DB_HOST', 'DB_NAME', 'DB_PASS', 'DB_POOL', 'DB_PORT', 'DB_SSLMODE', 'DB_USER', 'LOG_LEVEL',
    'REDIS_DB', 'REDIS_HOST', 'REDIS_PASSWORD', 'REDIS_PORT', 'REDIS_SENTINELS', 'REDIS_SENTINEL_MASTER',
    'REDIS_SENTINEL_PASSWORD', 'REDIS_SENTINEL_PORT', 'REDIS_SENTINEL_USERNAME', 'REDIS_URL', 'REDIS_USER',
    'TRUSTED_PROXY_IP', 'NODE_EXTRA_CA_CERTS',
}


def _full_env():
    env = _complete(DB_HOST='db.example', DB_PORT='25061', DB_NAME='pool', DB_USER='mastodon', DB_PASS='pw',
                    DB_SSLMODE='verify-full', PREPARED_STATEMENTS='false', REDIS_URL='rediss://default:rp@r.example:1',
                    REDIS_DRIVER='ruby', LOG_LEVEL='info', NODE_EXTRA_CA_CERTS='/ca/ca.crt', PGSSLROOTCERT='/ca/ca.crt',
                    SMTP_PASSWORD='sp', AWS_SECRET_ACCESS_KEY='ak', STREAMING_API_BASE_URL='wss://s.example.social',
                    WEB_CONCURRENCY='2', SIDEKIQ_CONCURRENCY='5', CACHE_REDIS_URL='redis://c.example:6379',
                    OTP_SECRET='o' * 128, CUSTOM_RAILS_KEY='x')
    return env


def test_streaming_gets_only_what_streaming_reads():
    env = _full_env()
    streaming = config.component_env(env, 'streaming', config.DEFAULT_VERSION)
    assert set(streaming) == STREAMING_READS & set(env)
    for secret in list(config.GENERATED) + ['SMTP_PASSWORD', 'AWS_SECRET_ACCESS_KEY']:
        assert secret not in streaming
    assert all(streaming[k] == env[k] for k in streaming)


def test_rails_gets_what_web_and_sidekiq_read():
    env = _full_env()
    rails = config.component_env(env, 'rails', config.DEFAULT_VERSION)
    assert {'LOG_LEVEL', 'NODE_EXTRA_CA_CERTS'}.isdisjoint(rails)
    assert set(rails) == set(env) - {'LOG_LEVEL', 'NODE_EXTRA_CA_CERTS'}
    with pytest.raises(ValueError):
        config.component_env(env, 'web', config.DEFAULT_VERSION)


def test_component_env_follows_the_version():
    env = _complete(ENABLE_SIDEKIQ_UNIQUE_JOBS_UI='true')
    assert 'ENABLE_SIDEKIQ_UNIQUE_JOBS_UI' in config.component_env(env, 'rails', 'v4.5.15')
    assert 'ENABLE_SIDEKIQ_UNIQUE_JOBS_UI' not in config.component_env(env, 'rails', 'v4.6.5')


# Credentials in URLs ----------------------------------------------------------------------------------------

AWKWARD_PASSWORDS = ['pa#ss', 'pa?ss', 'pa/ss', 'p@ss', '#', '?x=1', '/', '@', 'a:b', 'x#y?z/w@v', '%23',
                     ':', '#@#', 'end#', '?', 'pw with spaces']


def test_url_credentials_are_found_whatever_the_password_holds():
    """urlsplit reads `#` as a fragment: redis://:pa#ss@host hides the password from it; url_userinfo does not."""
    checked = 0
    for password in AWKWARD_PASSWORDS:
        for template in ('redis://:{pw}@h.example:6379/0', 'rediss://default:{pw}@h.example:25061',
                         'postgres://mastodon:{pw}@db.example:25060/mastodon?sslmode=verify-full',
                         'https://elastic:{pw}@es.example:9200', 'http://{pw}@proxy.example'):
            value = template.format(pw=password)
            assert config.url_has_password(value), value
            assert password in config.url_userinfo(value)
            for key in ('ES_HOST', 'REDIS_URL', 'MY_SETTING', 'CDN_HOST'):
                secret_env, config_env = config.split_env({key: value})
                assert key in secret_env and config_env == {}
            checked += 1
    assert checked == len(AWKWARD_PASSWORDS) * 5


@settings(max_examples=200, deadline=None)
@given(password=st.text(alphabet='#?/@:%a1 -_.~!$&()*+,;=', min_size=1, max_size=24),
       user=st.sampled_from(['', 'default', 'mastodon']),
       key=st.sampled_from(['ES_HOST', 'REDIS_URL', 'DATABASE_URL', 'S3_ENDPOINT', 'ANY_SETTING']))
def test_url_credentials_property(password, user, key):
    """Whatever a password holds, a URL with it goes to the Secret, and url_userinfo keeps all of it."""
    value = 'rediss://%s:%s@r.example:25061/0' % (user, password)
    assert config.url_userinfo(value).endswith(password)
    secret_env, config_env = config.split_env({key: value, 'LOCAL_DOMAIN': 'example.social'})
    assert secret_env == {key: value} and config_env == {'LOCAL_DOMAIN': 'example.social'}


@pytest.mark.parametrize('value', ['https://cdn.example', 'redis://r.example:6379/1', 'example.social',
                                   'notifications@example.social', 'https://github.com/mastodon/mastodon', ''])
def test_values_without_credentials_stay_in_the_config_map(value):
    secret_env, config_env = config.split_env({'SOME_URL': value})
    assert config_env == {'SOME_URL': value}


def test_port_is_read_past_a_password_with_a_hash():
    assert config.url_host_port('postgres://u:pa#ss@db.example:25061/pool') == ('db.example', 25061)
    errors, dummy = config.validate(_complete(DATABASE_URL='postgres://u:pa%23ss@db.example:25061/pool'))
    assert 'PREPARED_STATEMENTS' in [e.key for e in errors]


@pytest.mark.parametrize('value', ['redis://default:12#34@r.example:6379', 'redis://:pa?ss@r.example:6379',
                                   'redis://:p@ss@r.example:6379', 'redis://:pa#ss@r.example:6379'])
def test_unencoded_specials_in_url_credentials_are_errors(value):
    errors, dummy = config.validate(_complete(REDIS_URL=value))
    assert [e.key for e in errors] == ['REDIS_URL'] and value not in str(errors[0])
    assert 'percent-encode' in errors[0].reason or 'not a valid URL' in errors[0].reason or 'no host' in errors[0].reason


def test_encoded_password_and_path_at_sign_are_fine():
    assert config.validate(_complete(REDIS_URL='redis://:pa%23ss@r.example:6379'))[0] == []
    assert config.validate(_complete(SOURCE_BASE_URL='https://code.example/@team/mastodon'))[0] == []


def test_secret_looking_schema_keys_are_secret():
    pattern = config._SECRET_NAME_RE
    for key, setting in config.SCHEMA.items():
        if pattern.search(key) and key not in config.NOT_SECRET:
            assert setting.secret, key
    assert not any(config.SCHEMA[key].secret for key in config.NOT_SECRET)
    assert config.SCHEMA['RAILS_MASTER_KEY'].secret and config.SCHEMA['SAML_PRIVATE_KEY'].secret
    assert not config.SCHEMA['CAS_HOST'].secret and config.SCHEMA['PGHERO_STATS_DATABASE_URL'].secret is False
    assert config.is_secret('PGHERO_STATS_DATABASE_URL', 'postgres://u:pw@db.example/stats')
