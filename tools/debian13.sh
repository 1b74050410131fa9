#!/bin/bash
# Builds aetrain in a Debian 13 (trixie) root and runs its tests there: every test but the
# SLURM suite, which runs on Debian 12 only. Debian 13 brings GCC 14, Open MPI 5 (PRRTE),
# HDF5 1.14 and CLI11 2.4. As root, on Debian (debootstrap is installed if missing).
#
#   tools/debian13.sh            # prepare, build and ctest
#   tools/debian13.sh prepare    # make the root (debootstrap, minbase) and install the packages
#   tools/debian13.sh build      # configure and build, out of tree, in the root's /build
#   tools/debian13.sh ctest [ARGS]   # run ctest there (ARGS go to ctest)
#   tools/debian13.sh remove     # delete the root (refused while anything is mounted in it)
#
# D13_ROOT (default /var/tmp/aetrain-debian13) is reused when it exists, so a second run only
# installs what is missing and rebuilds what changed. With D13_TMPFS=1, prepare puts a new root
# on a tmpfs (tools/test-all.sh does, for its throwaway root: dpkg's many syncs cost nothing
# there, and remove is one unmount). The source tree is mounted read-only at /src inside the
# root; every other mount is undone when the script ends, however it ends.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=$(realpath -m "${D13_ROOT:-/var/tmp/aetrain-debian13}")
mirror=${D13_MIRROR:-http://deb.debian.org/debian}
jobs=$(nproc)
mounted=()

unmount_all() {  # newest first; lazily if a straggler still holds one, so none outlives us
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"
  done
  mounted=()
}
trap unmount_all EXIT
trap 'exit 130' INT  # a signal must end the script through EXIT, which unmounts
trap 'exit 143' TERM

mnt() {  # PATH-IN-ROOT MOUNT-ARGS...
  mkdir -p "$root$1"
  mount "${@:2}" "$root$1"
  mounted+=("$root$1")
}

mount_all() {
  mnt /proc -t proc proc                 # pgrep, and Open MPI reads its processes there
  mnt /sys -t sysfs -o ro sysfs          # hwloc reads the cores there: no /sys, no mpirun
  mnt /dev --bind /dev                   # without /dev/pts and /dev/shm, which are mounts of their own
  mnt /dev/pts --bind /dev/pts           # the launcher's pseudo-terminals
  mnt /dev/shm --bind /dev/shm           # Open MPI's shared-memory transport
  mnt /src --bind "$src"
  mount -o remount,bind,ro "$root/src"   # the build cannot write into the tree
}

in_root() {  # the host's PATH, HOME or TMPDIR may name directories the root lacks
  chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp "$@"
}

prepare() {
  # debootstrap removes its /debootstrap directory when it has finished.
  if [ ! -e "$root/etc/debian_version" ] || [ -e "$root/debootstrap" ]; then
    if [ -n "$(ls -A "$root" 2>/dev/null)" ]; then remove; fi  # half made by an interrupted run
    if [ -n "${D13_TMPFS:-}" ] && ! mountpoint -q "$root"; then
      mkdir -p "$root"
      mount -t tmpfs -o mode=755 aetrain-debian13 "$root"
    fi
    command -v debootstrap >/dev/null || {
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
    }
    debootstrap --variant=minbase trixie "$root" "$mirror"
  fi
  # No package may start a daemon in the root: it would hold the mounts.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  mount_all
  in_root /src/tools/install-deps.sh --no-extras
}

remove() {
  # An interrupted prepare unmounts on its way out, once its foreground command (apt, say) has
  # ended: give it a minute.
  local i
  for i in $(seq 60); do grep -qF " $root/" /proc/self/mounts || break; sleep 1; done
  if grep -qF " $root/" /proc/self/mounts; then
    echo "debian13.sh: $root still has mounts; not removing it" >&2
    return 1
  fi
  if mountpoint -q "$root"; then umount "$root"; fi  # a tmpfs root
  rm -rf --one-file-system "$root"
}

[ "$(id -u)" -eq 0 ] || { echo "tools/debian13.sh: run it as root (it mounts and chroots)" >&2; exit 1; }
start=$SECONDS
case ${1:-all} in
  prepare) prepare ;;
  build)
    mount_all
    in_root cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release
    in_root cmake --build /build -j"$jobs" ;;
  ctest)
    mount_all
    # The SLURM suite is Debian 12's (label slurm).
    in_root ctest --test-dir /build -j"$jobs" --output-on-failure -LE slurm "${@:2}" ;;
  all)
    "$0" prepare && "$0" build && "$0" ctest ;;
  remove) remove ;;
  *) echo "usage: tools/debian13.sh [prepare|build|ctest [ARGS]|remove|all]" >&2; exit 2 ;;
esac
echo "debian13.sh ${1:-all}: $((SECONDS - start)) s"
