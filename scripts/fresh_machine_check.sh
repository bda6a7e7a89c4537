#!/usr/bin/env bash
# Proves the README's two commands on a bare Debian, from nothing (not part of CI: it takes an hour).
#
#   sudo bash scripts/fresh_machine_check.sh bookworm|trixie [DIR]
#
# Builds a throw-away minimal Debian (debootstrap --variant=minbase, from the same Debian mirror as
# this machine's apt) in DIR (default /var/tmp/fresh-DIST), mounts /proc, /sys, /dev, /dev/pts and
# /dev/shm into it (always removed again on exit, failures included), installs only what cloning
# needs (git, ca-certificates, sudo), clones the committed HEAD of this repository as a user `dev`
# with password-less sudo, copies ../shared beside the clone, and runs, as that user in a clean
# environment (env -i), `bash scripts/run_sample.sh` then `bash scripts/run_tests.sh` (the setup that
# both do first is run as a step of its own before them, to time it apart from the main job).
# Prints one line per step: `[fresh DIST] step  seconds  ok|FAILED`; each step's output goes to
# DIR-logs/STEP.log. Exits non-zero when any step fails. Needs root, debootstrap,
# network access to the Debian archive and PyPI. The system is left in DIR for inspection
# (`chroot DIR`); delete it with `rm -rf --one-file-system DIR` once no mount is left under it
# (`findmnt -l | grep DIR` prints nothing).
# Nothing of this machine's Python setup is carried in (no pip.conf, no PIP_* variables, no local
# wheel folders): pip inside reaches PyPI itself. Only the CA certificates this machine trusts beyond
# Debian's bundle are added to the system's (a network that inspects TLS needs them, as here).
set -uo pipefail

DIST=${1:-}
case "$DIST" in bookworm | trixie) ;; *)
  echo "usage: $0 bookworm|trixie [DIR]" >&2
  exit 2
  ;;
esac
[ "$(id -u)" = 0 ] || {
  echo "$0 needs root (debootstrap, mount, chroot)" >&2
  exit 2
}
command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install debootstrap" >&2
  exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# ../shared beside the checkout; from a git worktree, beside the main checkout
SHARED=$(realpath -m "$ROOT/../shared")
if [ ! -d "$SHARED" ]; then
  common=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null) &&
    SHARED=$(realpath -m "$(dirname "$common")/../shared")
fi
DIR=$(realpath -m "${2:-/var/tmp/fresh-$DIST}")
LOGS="$DIR-logs"
# the Debian mirror this machine's apt uses (deb822 sources or the one-line format)
MIRROR=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
  2>/dev/null | head -1 | tr -d ' ')
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$LOGS"

# -- mounts: always removed, also when a step fails or the script is interrupted -------------------
MOUNTS=()
mount_all() {
  local m
  for m in proc sys dev dev/pts dev/shm; do mkdir -p "$DIR/$m"; done
  mount -t proc proc "$DIR/proc" && MOUNTS+=("$DIR/proc") || return 1
  mount -t sysfs sysfs "$DIR/sys" && MOUNTS+=("$DIR/sys") || return 1
  mount --bind /dev "$DIR/dev" && MOUNTS+=("$DIR/dev") || return 1
  mount --make-private "$DIR/dev" || return 1
  mount --bind /dev/pts "$DIR/dev/pts" && MOUNTS+=("$DIR/dev/pts") || return 1
  mount -t tmpfs -o mode=1777 shm "$DIR/dev/shm" && MOUNTS+=("$DIR/dev/shm") || return 1
}
unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}"
  done
  MOUNTS=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM

# -- one line per step ---------------------------------------------------------------------------
FAILED=0
step() { # step NAME COMMAND...: runs it, output to $LOGS/NAME.log, one line with seconds and result
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0))
  if [ $rc = 0 ]; then
    printf '[fresh %s] %-12s %6ss  ok\n' "$DIST" "$name" "$dt"
  else
    printf '[fresh %s] %-12s %6ss  FAILED (rc %s; last lines of %s:)\n' "$DIST" "$name" "$dt" "$rc" "$LOGS/$name.log"
    tail -n 25 "$LOGS/$name.log" | sed 's/^/    /'
    FAILED=1
  fi
  return $rc
}
as_dev() { # a command inside the system, as the user dev, in a clean environment
  env -i HOME=/home/dev USER=dev LOGNAME=dev LANG=C.UTF-8 PATH="$CHROOT_PATH" \
    chroot --userspec=dev:dev "$DIR" bash -c "cd /home/dev/repo && $1"
}
as_root() {
  env -i HOME=/root LANG=C.UTF-8 PATH="$CHROOT_PATH" DEBIAN_FRONTEND=noninteractive \
    chroot "$DIR" bash -c "$1"
}

do_debootstrap() {
  [ ! -e "$DIR" ] || [ -z "$(ls -A "$DIR")" ] || {
    echo "$DIR exists: the check starts from nothing; remove it first (when findmnt -l | grep $DIR" \
      "prints nothing: rm -rf --one-file-system $DIR)" >&2
    return 1
  }
  debootstrap --variant=minbase "$DIST" "$DIR" "$MIRROR"
}
trust_host_cas() { # the CAs this machine trusts beyond Debian's bundle (a TLS-inspecting proxy's)
  python3 - "$DIR/usr/local/share/ca-certificates" <<'PYEOF'
import glob, os, re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
debian = {c for p in glob.glob("/usr/share/ca-certificates/*/*.crt") for c in pem.findall(open(p).read())}
extra = [c for c in pem.findall(open("/etc/ssl/certs/ca-certificates.crt").read()) if c not in debian]
for i, c in enumerate(extra):
    with open(os.path.join(sys.argv[1], f"host-{i}.crt"), "w") as f:
        f.write(c + "\n")
print(f"{len(extra)} CA certificate(s) of this machine added to the system's")
PYEOF
}
do_prepare() {
  cp /etc/resolv.conf "$DIR/etc/resolv.conf"
  hostname >"$DIR/etc/hostname"
  # what Debian's installer writes (debootstrap writes none): localhost must resolve (sockets, sudo)
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$(hostname)" >"$DIR/etc/hosts"
  as_root "apt-get update -q && apt-get install -y -q --no-install-recommends git ca-certificates sudo" || return 1
  # pip reaches PyPI over HTTPS through this network as it does on this machine: same trust store
  trust_host_cas && as_root "update-ca-certificates" || return 1
  as_root "id dev >/dev/null 2>&1 || useradd -m -s /bin/bash dev" || return 1
  echo 'dev ALL=(ALL) NOPASSWD:ALL' >"$DIR/etc/sudoers.d/dev"
  chmod 440 "$DIR/etc/sudoers.d/dev"
}
do_clone() {
  local head bundle=/tmp/repo.bundle
  head=$(git -C "$ROOT" rev-parse HEAD) || return 1
  git -C "$ROOT" diff --quiet HEAD || echo "note: uncommitted changes in $ROOT are not tested"
  git -C "$ROOT" bundle create "$DIR$bundle" HEAD || return 1
  chmod 644 "$DIR$bundle"
  rm -rf "$DIR/home/dev/repo" "$DIR/home/dev/shared"
  env -i HOME=/home/dev LANG=C.UTF-8 PATH="$CHROOT_PATH" chroot --userspec=dev:dev "$DIR" \
    bash -c "git clone -q $bundle /home/dev/repo && cd /home/dev/repo && git -c advice.detachedHead=false checkout -q $head && git log -1 --oneline" ||
    return 1
  if [ -d "$SHARED" ]; then
    cp -a "$SHARED" "$DIR/home/dev/shared" && as_root "chown -R dev:dev /home/dev/shared"
  else
    echo "no $SHARED: the steps that read ../shared/data will fail"
  fi
}
system_versions() {
  as_dev '. /etc/os-release; echo "$PRETTY_NAME"; python3 --version;
    .venv/bin/python -c "import numpy; from qgis.core import Qgis; print(\"QGIS\", Qgis.QGIS_VERSION, \"numpy\", numpy.__version__)"'
}

main() {
  echo "[fresh $DIST] system in $DIR (mirror $MIRROR), logs in $LOGS, $(nproc) cores"
  step debootstrap do_debootstrap || exit 1
  mount_all || {
    echo "[fresh $DIST] mounting /proc /sys /dev into $DIR failed" >&2
    exit 1
  }
  step prepare do_prepare || exit 1
  step clone do_clone || exit 1
  # what both commands do first, timed on its own (apt, the venv, pip, the plugin); they then find it done
  step setup as_dev 'bash scripts/setup.sh'
  system_versions 2>/dev/null | sed "s/^/[fresh $DIST] /"
  step run_sample as_dev 'bash scripts/run_sample.sh'
  step run_tests as_dev 'bash scripts/run_tests.sh'
  grep -E '^[0-9]+ passed' "$LOGS/run_tests.log" | tail -1 | sed "s/^/[fresh $DIST] tests: /"
  exit $FAILED
}

# parsed whole before it runs: editing this file during an hour-long run cannot derail it
main "$@"
