#!/bin/sh
# Install one Debian package for the set-up scripts (get_data.sh, get_browser.sh): as root, or through sudo.
# Usage: apt_install.sh PACKAGE WITHOUT_APT
# On a machine without apt-get it prints "apt-get not available: WITHOUT_APT" (what happens instead) and
# succeeds, since each caller has a fallback; an apt failure is apt's own, with its exit status.
set -eu
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not available: $2"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
