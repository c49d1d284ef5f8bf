#!/bin/sh
# crun 1.8.1 refuses this host's hybrid cgroup layout (v1 controllers plus
# a cgroup2 mount at /sys/fs/cgroup/unified). This wrapper runs it in a
# private mount namespace where that cgroup2 mount is detached, so crun
# sees plain v1; the host's own mounts are untouched. CRUN names another
# crun binary (scripts/sid-crun.sh: crun 1.28 from the sid root).
exec unshare --mount --propagation private sh -c \
    'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "${CRUN:-crun}" "$@"' crun "$@"
