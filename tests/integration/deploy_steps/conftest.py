# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The DigitalOcean API stand-in fixture of tests/integration/digitalocean, reused (as tests/integration/mistakes
does); kube_cluster comes from tests/integration/conftest.py."""
from __future__ import annotations

import importlib.util
import os

_DO_CONFTEST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'digitalocean', 'conftest.py')
_spec = importlib.util.spec_from_file_location('fediops_steps_do_conftest', _DO_CONFTEST)
_do = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_do)

do_standin_session = _do.do_standin_session
