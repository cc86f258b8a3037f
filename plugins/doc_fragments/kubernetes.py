# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the Kubernetes modules (fediops.mastodon.kubernetes)."""

    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path of a kubeconfig file.
      - If not set, E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG), then C(~/.kube/config) is used; when none exists
        and O(host) is not set, the in-cluster service account configuration.
      - Contexts with exec credential plugins (for example C(doctl kubernetes cluster kubeconfig exec-credential),
        as written by C(doctl kubernetes cluster kubeconfig save)) work.
    type: path
  context:
    description:
      - Name of the kubeconfig context to use instead of the current context.
      - Defaults to E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example C(https://203.0.113.10:6443).
      - Overrides the server of the kubeconfig context; without O(kubeconfig) only O(host), O(api_key),
        O(ca_cert) and O(validate_certs) are used.
      - Defaults to E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token to authenticate with (overrides the kubeconfig credentials).
      - Defaults to E(K8S_AUTH_API_KEY). Never logged or returned.
    type: str
  ca_cert:
    description:
      - PEM file of the CA that signed the API server certificate.
      - Defaults to E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  validate_certs:
    description:
      - Verify the API server TLS certificate. When not set, the kubeconfig decides (default V(true)).
      - Defaults to E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
requirements:
  - kubernetes (the official Kubernetes Python client)
  - PyYAML
notes:
  - The modules talk to the Kubernetes API from the host they run on (usually C(localhost)).
  - Set the connection options once for a play with C(module_defaults) and the group
    C(group/fediops.mastodon.kubernetes).
'''
