# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/integration/awx/ee_smoke.yml, with the test venv standing in for the execution environment
(an EE runs it with ansible-navigator; the image cannot be built here)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from awx_helpers import COLLECTION_ROOT, collections_path, tool


def test_ee_smoke_playbook(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='false',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    done = subprocess.run([tool('ansible-playbook'), '-i', 'localhost,',
                           os.path.join(COLLECTION_ROOT, 'tests', 'integration', 'awx', 'ee_smoke.yml')],
                          capture_output=True, text=True, check=False, env=env, cwd=str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    recap = re.search(r'localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0', done.stdout)
    assert recap, done.stdout[-3000:]
    assert int(recap.group(2)) == 0
    assert done.stdout.count('...ignoring') >= 3  # the modules pointed at nothing
