# Sourced by the scripts that start all their ranks on this machine (the demos and
# mpirun-hybrid.sh): what Open MPI 4 (Debian 12) and 5 (Debian 13) both need there.

# As root, Open MPI refuses to start unless told twice.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Open MPI 5's TCP transport prints "Unable to find reachable pairing between local and remote
# interfaces" for each pair of ranks on a host with IPv6 addresses, although ranks on one
# machine talk through shared memory: there it needs no interface but loopback. A choice of
# interfaces made by the caller stands.
if [ -z "${OMPI_MCA_btl_tcp_if_include:-}${OMPI_MCA_btl_tcp_if_exclude:-}" ]; then
  export OMPI_MCA_btl_tcp_if_include=lo
fi
