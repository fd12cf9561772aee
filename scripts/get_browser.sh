#!/bin/sh
# Get the browser the page's tests drive (tests/test_ui_browser.py): Debian's headless-capable Chromium at
# /usr/bin/chromium, driven by Playwright for Python (installed with the test extra). Playwright's own browser
# download is not used: its CDN is not reachable from the build machines, the package registry is.
set -eu
if [ -x /usr/bin/chromium ]; then
    echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi
status=0
sh "$(dirname "$0")/apt_install.sh" chromium || status=$?
if [ "$status" -eq 0 ]; then
    echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null)"
elif [ "$status" -eq 3 ]; then
    echo "apt-get not available: install Chromium at /usr/bin/chromium, or the page's browser tests skip (fail in CI)"
else
    exit "$status"
fi
