#!/bin/sh
# The unprivileged user the rootless suites run skiff, runc and the engines
# as, made if missing (idempotent, safe to run concurrently): a home, and
# 65536 subordinate uids and gids for newuidmap/newgidmap. Prints
# "NAME UID GID HOME".
set -eu
user=${SKIFF_ROOTLESS_USER:-skiff-rootless}
if ! id -u "$user" >/dev/null 2>&1; then
    # Another suite may be making it at the same moment.
    useradd --create-home --shell /bin/sh --comment "skiff rootless tests" "$user" 2>/dev/null \
        || id -u "$user" >/dev/null
fi
# useradd gives subordinate ids where login.defs says so; not everywhere.
if ! grep -q "^$user:" /etc/subuid 2>/dev/null || ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
echo "$user $(id -u "$user") $(id -g "$user") $home"
