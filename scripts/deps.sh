#!/bin/sh
# deps.sh [TIER] -- installs the Debian packages a make target needs, and only
# those that are missing.  The tiers nest:
#
#   build   `make`, `make run`, `make install`: the C toolchain and the C
#           libraries (MPFR, GMP, HDF5, jansson, libpng).  No Python.
#   check   `make check`, `make sanitize`: build + cmocka, xmllint, and
#           Debian's python3 with numpy and h5py (the Keras-layout models,
#           the golden-trace helpers).
#   torch   `make bench`, `make mutants`: check + python3-torch (the PyTorch
#           baselines; on Debian it pulls in about 200 packages)
#   full    `make check FULL=1`, CI: torch + chromium (the HTML report
#           rendered headless).  Without them `make check` counts the adapter
#           and browser tests as skipped, not passed.
#   mpi     `make MPI=1`, `make check-mpi`: check + Open MPI (mpicc, mpirun;
#           the default build has no MPI).  CI installs full and mpi.
#
#   deps.sh --list TIER    prints the packages of TIER, installs nothing
#   LRP_DEPS_EXTRA="pkg ..."   extra packages
set -eu

BUILD_PKGS="make gcc libc6-dev pkg-config libmpfr-dev libgmp-dev libhdf5-dev libjansson-dev libpng-dev"
CHECK_PKGS="libcmocka-dev libxml2-utils python3 python3-numpy python3-h5py"
TORCH_PKGS="python3-torch"
FULL_PKGS="chromium"
MPI_PKGS="libopenmpi-dev openmpi-bin"

list=0
if [ "${1:-}" = "--list" ]; then
    list=1
    shift
fi
tier=${1:-build}
case "$tier" in
build) PKGS="$BUILD_PKGS" ;;
check) PKGS="$BUILD_PKGS $CHECK_PKGS" ;;
torch) PKGS="$BUILD_PKGS $CHECK_PKGS $TORCH_PKGS" ;;
full) PKGS="$BUILD_PKGS $CHECK_PKGS $TORCH_PKGS $FULL_PKGS" ;;
mpi) PKGS="$BUILD_PKGS $CHECK_PKGS $MPI_PKGS" ;;
*)
    echo "deps: unknown tier '$tier' (build, check, torch, full or mpi)" >&2
    exit 2
    ;;
esac
PKGS="$PKGS ${LRP_DEPS_EXTRA:-}"

if [ "$list" -eq 1 ]; then
    # shellcheck disable=SC2086
    printf '%s\n' $PKGS
    exit 0
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "deps ($tier): missing Debian packages:$missing"
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
