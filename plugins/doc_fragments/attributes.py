# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Shared descriptions of module attributes (check mode, diff, platform)."""

    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
'''

    # Modules that only talk to an API and change nothing on the target.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
'''

    ACTIONGROUP_DIGITALOCEAN = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/fediops.mastodon.digitalocean) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - fediops.mastodon.digitalocean
'''

    ACTIONGROUP_KUBERNETES = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/fediops.mastodon.kubernetes) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - fediops.mastodon.kubernetes
'''
