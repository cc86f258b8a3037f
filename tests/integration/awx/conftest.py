# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the AWX tests: the DigitalOcean API stand-in fixture of tests/integration/digitalocean,
reused (imported from its conftest, not duplicated); kube_cluster comes from tests/integration/conftest.py."""
from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

_DO_CONFTEST = os.path.join(os.path.dirname(HERE), 'digitalocean', 'conftest.py')
_spec = importlib.util.spec_from_file_location('fediops_awx_do_conftest', _DO_CONFTEST)
_do = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_do)

do_standin_session = _do.do_standin_session  # session-scoped: base_url, token, ca_file, fixtures
