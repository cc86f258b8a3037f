# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line of the stand-in: prints one JSON line {base_url, port, fixtures} once it listens."""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from .fixtures import load_or_generate
from .server import StandinServer, server_context


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m do_standin', description=__doc__)
    parser.add_argument('--fixtures', required=True,
                        help='fixture JSON file; generated (clusters, pools, CAs, no keys) when it does not exist')
    parser.add_argument('--host', default='127.0.0.1', help='loopback address to listen on')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--cert', required=True, help='PEM server certificate (chain)')
    parser.add_argument('--key', required=True, help='PEM private key of the server certificate')
    parser.add_argument('--token-file', help='file holding the bearer token to accept; generated when missing')
    parser.add_argument('--faults', help='JSON file with a list of fault rules to start with')
    args = parser.parse_args(argv)
    if args.host not in ('127.0.0.1', '::1', 'localhost'):
        parser.error('the stand-in only listens on loopback')
    fixtures = load_or_generate(args.fixtures)
    token = os.environ.get('DO_STANDIN_TOKEN')
    if args.token_file and os.path.exists(args.token_file):
        with open(args.token_file, encoding='utf-8') as handle:
            token = handle.read().strip()
    if not token:
        token = 'standin-' + secrets.token_hex(16)
        if args.token_file:
            fd = os.open(args.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(token + '\n')
    server = StandinServer(fixtures, token, server_context(args.cert, args.key), host=args.host, port=args.port)
    if args.faults:
        with open(args.faults, encoding='utf-8') as handle:
            server.set_faults(json.load(handle))
    print(json.dumps(dict(base_url=server.base_url, port=server.port, fixtures=os.path.abspath(args.fixtures))), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
