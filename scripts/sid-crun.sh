#!/bin/sh
# crun 1.28 from the Debian sid root (peers/crun, scripts/sid-root.sh):
# like Debian 12's crun it refuses this hybrid cgroup host, so it runs
# through crun-without-unified.sh as well.
here=$(cd "$(dirname "$0")" && pwd)
CRUN=$here/../target/sid-root/peers/crun exec "$here/crun-without-unified.sh" "$@"
