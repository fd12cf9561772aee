#!/bin/sh
# Get the load balancer the replica drill puts in front of several `tf-mlp serve` replicas
# (tests/test_replicas.py, scripts/replicas.py): Debian's HAProxy at /usr/sbin/haproxy. Only the binary is
# used; the drill writes its own configuration and runs HAProxy as its own process, never the system service.
set -eu
if [ ! -x /usr/sbin/haproxy ]; then
    sh "$(dirname "$0")/apt_install.sh" haproxy \
        "install HAProxy at /usr/sbin/haproxy, or the replica drill skips (fails in CI)"
fi
if [ -x /usr/sbin/haproxy ]; then
    echo "HAProxy: $(/usr/sbin/haproxy -v 2>/dev/null | head -n 1)"
fi
