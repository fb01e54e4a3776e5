#!/usr/bin/env bash
# Installs what Fustor's build and tests need, from Debian 12 packages. Idempotent; run as root.
# Skips packages that are already installed, and runs `apt-get update` at most once.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git python3   # toolchain and test runner
  clang libclang-rt-14-dev                       # libFuzzer harnesses (make fuzz)
  libfyaml-dev                                   # YAML config with file:line:col marks
  libxxhash-dev                                  # hashes for the view indexes
  libmicrohttpd-dev                              # Fusion's HTTP listeners
  libzstd-dev                                    # Fusion's view snapshots
  libcurl4-openssl-dev                           # the agent's HTTP sender
  libcmocka-dev                                  # unit tests
  valgrind                                       # leak checks
  curl                                           # e2e: a client that sends Expect: 100-continue
  bindfs fuse3                                   # e2e: FUSE mounts that act as NFS clients
  watchman plocate                               # make bench: the peers Fustor is measured against
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
