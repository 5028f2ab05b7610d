#!/bin/sh
# deps.sh -- installs the Debian packages lrp-oracle needs, and only those
# that are missing.  Called first by `make run` and `make check`, so the two
# README commands are the whole set-up on a fresh Debian 12 machine.
#
#   LRP_DEPS_EXTRA="pkg ..."   extra packages (e.g. for the Python adapter)
set -eu

# python3-*: the PyTorch adapter and the Keras-layout test models (tests/keras,
# tools/python) run on Debian's /usr/bin/python3.
PKGS="make gcc libc6-dev pkg-config libmpfr-dev libgmp-dev libhdf5-dev libcmocka-dev libjansson-dev python3 python3-numpy python3-h5py python3-torch ${LRP_DEPS_EXTRA:-}"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "deps: missing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
    echo "deps: not root, using sudo"
else
    echo "deps: cannot install (not root and no sudo); please run: apt-get install$missing" >&2
    exit 2
fi
echo "deps: running apt-get update"
$SUDO apt-get update -q >/dev/null
echo "deps: running apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
echo "deps: done"
