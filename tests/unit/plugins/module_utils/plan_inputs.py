# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The inputs the plan's unit tests share: the roles' argument specs, a fixed time, and the smallest set of variables
the plan accepts (an explicit database, no cluster: nothing is read or written)."""

from __future__ import annotations

import datetime
import os

import yaml

from ansible_collections.fediops.mastodon.plugins.module_utils._deploy import variables

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
SPECS = variables.load_role_specs(os.path.join(ROOT, 'roles'), yaml.safe_load)
NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc)
BASE = {'config_local_domain': 'social.example', 'config_database_source': 'explicit', 'config_db_host': 'db.example',
        'config_db_password': 'pw-0123456789', 'config_redis_url': 'rediss://default:pw@redis.example:25061',
        'config_media_ephemeral': True, 'config_tls_preflight': False}
