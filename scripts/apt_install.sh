#!/bin/sh
# Install Debian packages for the set-up scripts (get_data.sh, get_browser.sh): as root, or through sudo.
# Exit status 3 means this machine has no apt-get; any other failure is apt's own.
set -eu
command -v apt-get >/dev/null 2>&1 || exit 3
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
