#!/bin/sh
# Get the browser the page's tests drive (tests/test_ui_browser.py): Debian's headless-capable Chromium at
# /usr/bin/chromium, driven by Playwright for Python (installed with the test extra). Playwright's own browser
# download is not used: its CDN is not reachable from the build machines, the package registry is.
set -eu
if [ ! -x /usr/bin/chromium ]; then
    sh "$(dirname "$0")/apt_install.sh" chromium \
        "install Chromium at /usr/bin/chromium, or the page's browser tests skip (fail in CI)"
fi
if [ -x /usr/bin/chromium ]; then
    echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null)"
fi
