# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the DigitalOcean modules (fediops.mastodon.digitalocean)."""

    DOCUMENTATION = r'''
options:
  api_token:
    description:
      - DigitalOcean API token (a personal access token with at least C(database:read) scope; C(database:view_credentials)
        for passwords, C(database:create) to add users and connection pools).
      - If not set, the first of the environment variables E(DIGITALOCEAN_ACCESS_TOKEN), E(DIGITALOCEAN_TOKEN)
        and E(DO_API_TOKEN) that is set is used.
      - The token is never returned, logged or included in error messages.
    type: str
    aliases: [oauth_token]
  api_base_url:
    description:
      - Base URL of the DigitalOcean API, without the C(/v2) path.
      - The token is only ever sent to this origin; pagination links that point elsewhere are refused.
    type: str
    default: https://api.digitalocean.com
  timeout:
    description: Timeout of one HTTP request, in seconds.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the TLS certificate of the API endpoint.
      - Only set to V(false) on personally controlled test endpoints.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of CA certificates to trust for the API endpoint instead of the system store
        (for a private test endpoint). E(REQUESTS_CA_BUNDLE) works too.
    type: path
  max_retries:
    description:
      - How many times one request is retried after HTTP 429, HTTP 5xx, a timeout or a connection error.
      - HTTP 429 waits as long as the C(retry-after) header (or the C(ratelimit-reset) epoch) says;
        the others back off exponentially with jitter.
    type: int
    default: 5
  max_wait:
    description:
      - Upper bound, in seconds, of the total time one request may spend waiting before retries.
      - When the API asks for a longer wait (for example C(retry-after) beyond this bound) the module fails
        at once with a message saying so.
    type: int
    default: 60
requirements:
  - requests
notes:
  - The modules call the DigitalOcean API from the host they run on (usually C(localhost), with C(delegate_to) or a
    local connection).
  - "Set the connection options once for a play with
    C(module_defaults: {group/fediops.mastodon.digitalocean: {api_token: ...}})."
'''
