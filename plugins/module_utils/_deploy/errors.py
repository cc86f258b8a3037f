# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan's error type and the one "did you mean".

PRIVATE: no API guarantees; the map is docs/dev/ARCHITECTURE.md."""

from __future__ import annotations

import difflib



class PlanError(Exception):
    """Every problem found by one step of the plan; each ConfigError names its variable."""

    def __init__(self, errors, what='the plan found problems'):
        self.errors = list(errors)
        self.what = what
        super(PlanError, self).__init__(self.message())

    def message(self):
        lines = ['%s (%d); nothing was changed:' % (self.what, len(self.errors))]
        lines += ['- %s' % e for e in self.errors]
        return '\n'.join(lines)

    @property
    def variables(self):
        return sorted(set(e.key for e in self.errors))


def did_you_mean(word, candidates):
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return ' (did you mean %s?)' % match[0] if match else ''
