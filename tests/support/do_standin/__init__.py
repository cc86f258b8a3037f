# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Local HTTPS stand-in of DigitalOcean's databases API, for tests and `make demo`.

python -m do_standin --fixtures FILE --port 0 --cert CERT.pem --key KEY.pem [--token-file F]
(run from tests/support, or with tests/support on PYTHONPATH).
"""
from __future__ import annotations

from .fixtures import ca_pem, generate, load_or_generate
from .server import StandinServer, server_context

__all__ = ['StandinServer', 'ca_pem', 'generate', 'load_or_generate', 'server_context']
