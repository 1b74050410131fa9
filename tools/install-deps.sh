#!/bin/sh
# Installs what aetrain needs to build, test and run its demo, from Debian's packages (the
# names are the same on Debian 12 "bookworm" and Debian 13 "trixie"), and test references
# unless --no-extras is given: SLURM's daemons (the tests run the batch scripts under a real
# controller), PyTorch (the training recipe is checked against it step by step),
# clang-format and clang-tidy (the lint test: tools/lint.sh), and Debian's anndata and venv
# (the single_cell suite writes and reads .h5ad files with Debian's anndata and with PyPI's, in a
# virtual environment it makes; Debian 13 has no python3-anndata, and that suite's anndata tests
# skip themselves where neither can be had).
# tools/debian13.sh passes it: those suites run on Debian 12 only. groff renders the man page
# in its test.
# A quick no-op when everything is already there. Uses sudo when not run as root.
set -eu
# procps: the fault tests find the ranks with pgrep (a minimal Debian lacks it). python3-scipy:
# the single_cell suite's sparse matrices (named, not left to another package's dependencies).
packages="g++ cmake make openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools zlib1g-dev
  libeigen3-dev libblis-openmp-dev libcli11-dev libgtest-dev python3 python3-h5py python3-numpy python3-matplotlib
  python3-scipy dataset-fashion-mnist procps groff-base"
[ "${1:-}" = --no-extras ] || packages="$packages munge slurmctld slurmd slurm-client python3-torch libopenblas0-openmp
  clang-format clang-tidy python3-anndata python3-venv"
# shellcheck disable=SC2086
if dpkg-query -W -f '${Status}\n' $packages 2>/dev/null | grep -qv 'install ok installed' ||
   [ "$(dpkg-query -W -f '${Status}\n' $packages 2>/dev/null | wc -l)" -ne "$(echo $packages | wc -w)" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
fi
