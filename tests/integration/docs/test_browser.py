# -*- coding: utf-8 -*-
# Copyright (c) fediops.mastodon contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The built site in a real browser (Debian's chromium, headless): the main pages render without horizontal
overflow (document.documentElement.scrollWidth <= clientWidth: long code blocks and wide tables scroll inside
their own box, not the page) at a desktop and a tablet width, and screenshots are saved for a person to look at
(build/docs-screenshots/, or $FEDIOPS_DOCS_SCREENSHOTS).

The check runs in the page itself: a copy of each page gets a script that measures on `load` and writes the result
into the DOM, which `chromium --headless --dump-dom` prints.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from docs_helpers import COLLECTION_ROOT

MODULE_PAGE = 'collections/fediops/mastodon/mastodon_status_module.html'
PAGES = {
    'index': 'index.html',
    'module': MODULE_PAGE,
    'guide_deploy': 'collections/fediops/mastodon/docsite/guide_deploy.html',
    'benchmark': 'collections/fediops/mastodon/docsite/benchmark.html',
    'role': 'collections/fediops/mastodon/sidekiq_role.html',
}
WIDTHS = (1280, 820)
CHECK = '''<script>
window.addEventListener('load', function () {
  var root = document.documentElement, wide = [];
  document.querySelectorAll('body *').forEach(function (el) {
    var box = el.getBoundingClientRect();
    if (box.right > root.clientWidth + 1 && wide.length < 5) {
      wide.push(el.tagName.toLowerCase() + '.' + (el.className || '') + ' right=' + Math.round(box.right));
    }
  });
  var out = document.createElement('pre');
  out.id = 'fediops-overflow';
  out.textContent = JSON.stringify({scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, wide: wide,
                                    title: document.title, images: Array.prototype.map.call(
                                      document.images, function (img) { return img.naturalWidth; })});
  document.body.appendChild(out);
});
</script>'''


def _chromium():
    path = shutil.which('chromium')
    if not path:
        pytest.fail('chromium not found: scripts/setup.sh --for docs installs Debian\'s chromium')
    return path


def _run(args):
    # root needs --no-sandbox; no GPU in a headless run.
    return subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                           '--no-first-run', '--disable-extensions', '--virtual-time-budget=5000'] + args,
                          capture_output=True, text=True, check=False, timeout=120)


def measure(html_root, page, width):
    """The page's widths (and its too-wide elements) as the browser lays it out at `width` CSS pixels."""
    source = html_root / page
    probe = source.with_name(source.stem + '.fediops-probe.html')
    probe.write_text(source.read_text(encoding='utf-8').replace('</body>', CHECK + '</body>'), encoding='utf-8')
    try:
        done = _run(['--window-size=%d,900' % width, '--dump-dom', probe.as_uri()])
    finally:
        probe.unlink()
    match = re.search(r'<pre id="fediops-overflow">(.*?)</pre>', done.stdout, re.S)
    assert match, 'no measurement from %s: %s' % (page, done.stderr[-2000:])
    return json.loads(match.group(1).replace('&quot;', '"').replace('&amp;', '&').replace('&lt;', '<')
                      .replace('&gt;', '>'))


@pytest.fixture(scope='module')
def screenshot_dir():
    path = os.environ.get('FEDIOPS_DOCS_SCREENSHOTS') or os.path.join(COLLECTION_ROOT, 'build', 'docs-screenshots')
    os.makedirs(path, exist_ok=True)
    return path


@pytest.mark.parametrize('name', sorted(PAGES))
def test_page_renders_without_horizontal_overflow(docs_site, screenshot_dir, name):
    page = PAGES[name]
    for width in WIDTHS:
        found = measure(docs_site.html, page, width)
        print('%s at %d px: %s' % (page, width, found))
        assert found['title'] and 'fediops.mastodon' in found['title'], found
        assert found['scrollWidth'] <= found['clientWidth'], (
            '%s overflows horizontally at %d px: %s' % (page, width, found))
        assert all(found['images']), 'an image did not load: %s' % found
    shot = os.path.join(screenshot_dir, '%s.png' % name)
    done = _run(['--window-size=1280,1000', '--screenshot=%s' % shot, (docs_site.html / page).as_uri()])
    assert os.path.getsize(shot) > 10000, done.stderr[-2000:]
    print('screenshot:', shot)
