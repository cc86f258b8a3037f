# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the mistakes corpus: the DigitalOcean API stand-in fixture of tests/integration/digitalocean,
reused (imported from its conftest, as tests/integration/awx does); kube_cluster comes from
tests/integration/conftest.py. The classification table is printed at the end of the session."""
from __future__ import annotations

import importlib.util
import os

_DO_CONFTEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'digitalocean', 'conftest.py')
_spec = importlib.util.spec_from_file_location('fediops_mistakes_do_conftest', _DO_CONFTEST)
_do = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_do)

do_standin_session = _do.do_standin_session  # session-scoped: base_url, token, ca_file, fixtures


def pytest_terminal_summary(terminalreporter):
    table = getattr(terminalreporter.config, 'mistakes_table', None)
    if table:
        terminalreporter.write_sep('=', 'operator mistakes: classification')
        for line in table.splitlines():
            terminalreporter.write_line(line)
