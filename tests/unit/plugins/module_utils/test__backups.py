# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup half of the point-of-no-return gate, on answers shaped as DigitalOcean's databases_list_backups
(responses/database_backups.yml: {backups: [{created_at, size_gigabytes}], scheduled_backup_time?, backup_progress?})
and on the operator's migrations_backup_confirmed_at."""
from __future__ import annotations

import datetime
import json

import pytest
import requests

from ansible_collections.fediops.mastodon.plugins.module_utils._backups import (
    DEFAULT_MAX_AGE, backup_gate, backup_refused, confirmed_backup_gate, do_backup_gate, parse_max_age, parse_timestamp,
    restore_commands)
from ansible_collections.fediops.mastodon.plugins.module_utils._digitalocean import DigitalOceanClient, DigitalOceanError
from ansible_collections.fediops.mastodon.plugins.module_utils._mastodon_config import ConfigError

NOW = datetime.datetime(2026, 12, 5, 17, 30, tzinfo=datetime.timezone.utc)
MAX_AGE = parse_max_age(DEFAULT_MAX_AGE)
CLUSTER = dict(id='9cc10173-e9ea-4176-9dbc-a4cee4c4ff30', name='mastodon-pg', engine='pg', version='16',
               region='ams3', size='db-s-2vcpu-4gb', num_nodes=2)
SCHEDULE = dict(backup_hour=3, backup_minute=10, backup_interval_hours=24)


def answer(*created, **extra):
    body = dict(backups=[dict(created_at=c, size_gigabytes=0.0336) for c in created], scheduled_backup_time=SCHEDULE)
    body.update(extra)
    return body


def test_default_max_age_is_a_day_and_two_hours():
    """DigitalOcean backs PostgreSQL up daily: 24 h between backups plus 2 h for the running one to be listed."""
    assert MAX_AGE == 26 * 3600


@pytest.mark.parametrize('text,seconds', [('26h', 93600), ('90m', 5400), ('1d', 86400), ('1d2h', 93600),
                                          (' 2h 30m ', 9000), (3600, 3600)])
def test_parse_max_age(text, seconds):
    assert parse_max_age(text) == seconds


@pytest.mark.parametrize('text', ['', '26', '26 hours', '-1h', '0h', 'h', True, None, 0, 1.5])
def test_bad_max_age_names_the_variable(text):
    with pytest.raises(ConfigError) as info:
        parse_max_age(text)
    assert info.value.key == 'migrations_backup_max_age'


def test_fresh_backup_passes_and_prints_the_restore_commands():
    ok, message, point = backup_gate(answer('2026-11-30T03:10:00Z', '2026-12-05T03:10:04Z', '2026-12-04T03:10:00Z'),
                                     NOW, MAX_AGE, CLUSTER)
    assert ok is True
    assert point['created_at'] == '2026-12-05T03:10:04Z' and point['age_seconds'] == 14 * 3600 + 19 * 60 + 56
    assert point['source'] == 'digitalocean' and point['cluster'] == 'mastodon-pg' and point['size_gigabytes'] == 0.0336
    # doctl's timestamp layout is "2006-01-02 15:04:05 +0000 UTC" (doctl databases create --restore-from-timestamp)
    assert point['doctl'] == ("doctl databases create mastodon-pg-restored-202612050310 --restore-from-cluster-name "
                              "mastodon-pg --restore-from-timestamp '2026-12-05 03:10:04 +0000 UTC' --engine pg "
                              "--version 16 --region ams3 --size db-s-2vcpu-4gb --num-nodes 2")
    # databases_create_cluster.yml: the new cluster's attributes and backup_restore {database_name, backup_created_at}
    method, path, body = point['api'].split(' ', 2)
    assert (method, path) == ('POST', '/v2/databases')
    assert json.loads(body) == dict(name='mastodon-pg-restored-202612050310', engine='pg', version='16', region='ams3',
                                    size='db-s-2vcpu-4gb', num_nodes=2,
                                    backup_restore=dict(database_name='mastodon-pg', backup_created_at='2026-12-05T03:10:04Z'))
    assert 'restore point: backup of \'mastodon-pg\' from 2026-12-05T03:10:04Z (14 h 19 min ago' in message
    assert point['doctl'] in message and point['api'] in message and 'NEW cluster' in message


def test_backup_exactly_max_age_old_passes_one_second_more_refuses():
    edge = NOW - datetime.timedelta(seconds=MAX_AGE)
    assert backup_gate(answer(edge.strftime('%Y-%m-%dT%H:%M:%SZ')), NOW, MAX_AGE, CLUSTER)[0] is True
    older = edge - datetime.timedelta(seconds=1)
    assert backup_gate(answer(older.strftime('%Y-%m-%dT%H:%M:%SZ')), NOW, MAX_AGE, CLUSTER)[0] is False


def test_stale_backup_is_refused_with_its_age_the_schedule_and_the_variable():
    ok, message, point = backup_gate(answer('2026-12-02T03:10:00Z', '2026-12-01T03:10:00Z'), NOW, MAX_AGE, CLUSTER)
    assert ok is False
    assert message.startswith('refusing the post-deployment migrations: the newest backup of \'mastodon-pg\' is from '
                              '2026-12-02T03:10:00Z, 3 days 14 h ago, older than migrations_backup_max_age (26 h 00 min)')
    assert 'DigitalOcean backs it up daily at 03:10 UTC' in message and 'raise migrations_backup_max_age' in message
    assert point['created_at'] == '2026-12-02T03:10:00Z'  # still shown: it is what a restore would go back to


def test_no_backup_is_refused_and_says_one_is_running():
    ok, message, point = backup_gate(answer(backup_progress='36'), NOW, MAX_AGE, CLUSTER)
    assert ok is False and point is None
    assert 'database cluster \'mastodon-pg\' has no backup to go back to (DigitalOcean lists none)' in message
    assert 'a backup is running now (36% done)' in message and 'migrations_post: hold' in message


def test_backups_without_a_readable_time_are_no_backup():
    ok, message, point = backup_gate(answer('yesterday'), NOW, MAX_AGE, CLUSTER)
    assert ok is False and point is None and 'lists 1 without a readable created_at' in message


def test_a_plain_list_of_backups_and_no_cluster_object():
    ok, message, point = backup_gate([dict(created_at='2026-12-05T03:10:00Z', size_gigabytes=1.0)], NOW, MAX_AGE)
    assert ok is True and '--restore-from-cluster-name <cluster-name> ' in point['doctl']
    assert point['cluster'] == 'the PostgreSQL cluster'


def test_backup_from_the_future_is_refused():
    ok, message, point = backup_gate(answer('2026-12-05T19:00:00Z'), NOW, MAX_AGE, CLUSTER)
    assert ok is False and 'in the future' in message and 'clock' in message
    # a few seconds ahead is clock skew, not an error
    assert backup_gate(answer('2026-12-05T17:31:00Z'), NOW, MAX_AGE, CLUSTER)[0] is True


class FakeSession(object):
    def __init__(self, *responses):
        self.responses = list(responses)
        self.urls = []

    def get(self, url, **kwargs):
        self.urls.append(url)
        status, body = self.responses.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode('utf-8')  # pylint: disable=protected-access
        response.headers['content-type'] = 'application/json'
        response.headers['x-request-id'] = 'req-7'
        return response


def _client(*responses):
    session = FakeSession(*responses)
    return DigitalOceanClient('unit-token', base_url='https://api.example.test', session=session, sleep=lambda s: None,
                              max_retries=1, rand=lambda: 0.0), session


def test_the_client_call_and_the_gate_on_its_answer():
    client, session = _client((200, answer('2026-12-05T03:10:00Z', backup_progress='12')))
    ok, message, point = do_backup_gate(client, CLUSTER, NOW, MAX_AGE)
    assert ok is True and point['created_at'] == '2026-12-05T03:10:00Z'
    assert session.urls == ['https://api.example.test/v2/databases/%s/backups' % CLUSTER['id']]


def test_an_api_error_is_a_refusal_naming_digitaloceans_error():
    client, session = _client((404, dict(id='not_found', message='The resource you were accessing could not be found.',
                                         request_id='req-7')))
    ok, message, point = do_backup_gate(client, CLUSTER, NOW, MAX_AGE)
    assert ok is False and point is None
    assert message.startswith('refusing the post-deployment migrations: the backups of \'mastodon-pg\' could not be read')
    assert 'HTTP 404 not_found: The resource you were accessing could not be found.' in message
    assert 'unit-token' not in message
    # 5xx: retried (max_retries 1), then refused
    client, session = _client((500, dict(id='server_error', message='boom')), (503, dict(id='unavailable', message='later')))
    ok, message, point = do_backup_gate(client, CLUSTER, NOW, MAX_AGE)
    assert ok is False and 'HTTP 503 unavailable: later' in message and len(session.urls) == 2
    assert backup_refused(DigitalOceanError('x'), CLUSTER)[0] is False


def test_an_answer_without_the_required_backups_list_is_an_error():
    client, session = _client((200, dict(scheduled_backup_time=SCHEDULE)))
    with pytest.raises(DigitalOceanError, match="no 'backups' list"):
        client.database_backups(CLUSTER['id'])


def test_confirmed_backup_recent_passes():
    ok, message, point = confirmed_backup_gate('2026-12-05T03:00:00Z', NOW, MAX_AGE)
    assert ok is True and point == dict(source='operator', created_at='2026-12-05T03:00:00Z', age_seconds=14 * 3600 + 1800)
    assert 'restore point: the backup confirmed by migrations_backup_confirmed_at, from 2026-12-05T03:00:00Z' in message


def test_confirmed_backup_with_an_offset_is_read_in_utc():
    ok, message, point = confirmed_backup_gate('2026-12-05T04:00:00+01:00', NOW, MAX_AGE)
    assert ok is True and point['created_at'] == '2026-12-05T03:00:00Z'


def test_confirmed_backup_stale_is_refused():
    ok, message, point = confirmed_backup_gate('2026-12-03T03:00:00Z', NOW, MAX_AGE)
    assert ok is False and point['created_at'] == '2026-12-03T03:00:00Z'
    assert 'older than migrations_backup_max_age (26 h 00 min)' in message
    assert 'set migrations_backup_confirmed_at to its time' in message


@pytest.mark.parametrize('value', [None, ''])
def test_confirmed_backup_absent_is_refused_naming_the_variable(value):
    ok, message, point = confirmed_backup_gate(value, NOW, MAX_AGE)
    assert ok is False and point is None
    assert 'confirm it by setting migrations_backup_confirmed_at to the time it was taken' in message


@pytest.mark.parametrize('value', ['2026-12-05 04:00', '2026-12-05T04:00:00', '05/12/2026 03:00Z', 'yesterday',
                                   '2026-13-05T03:00:00Z', 1764903600, 'hunter2-secret'])
def test_confirmed_backup_bad_format_is_refused_naming_the_variable(value):
    ok, message, point = confirmed_backup_gate(value, NOW, MAX_AGE)
    assert ok is False and point is None
    assert 'migrations_backup_confirmed_at must be an ISO 8601 date and time with its zone' in message
    assert str(value) not in message


def test_confirmed_backup_in_the_future_is_refused():
    ok, message, point = confirmed_backup_gate('2026-12-06T03:00:00Z', NOW, MAX_AGE)
    assert ok is False and 'in the future' in message


def test_parse_timestamp():
    assert parse_timestamp('2019-01-31T19:25:22Z') == datetime.datetime(2019, 1, 31, 19, 25, 22, tzinfo=datetime.timezone.utc)
    assert parse_timestamp('2019-01-31T19:25:22.123Z').second == 22
    assert parse_timestamp('2019-01-31T19:25:22-0230').hour == 21
    assert parse_timestamp('2019-02-30T19:25:22Z') is None and parse_timestamp(None) is None


def test_restore_commands_leave_out_unknown_attributes():
    created = datetime.datetime(2026, 12, 5, 3, 10, tzinfo=datetime.timezone.utc)
    commands = restore_commands(dict(name='db'), created)
    assert commands['doctl'] == ("doctl databases create db-restored-202612050310 --restore-from-cluster-name db "
                                 "--restore-from-timestamp '2026-12-05 03:10:00 +0000 UTC' --engine pg")
    assert json.loads(commands['api'].split(' ', 2)[2])['backup_restore'] == dict(
        database_name='db', backup_created_at='2026-12-05T03:10:00Z')
