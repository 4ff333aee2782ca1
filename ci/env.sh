# Environment for building and running juxmem's MPI programs on a small machine, as root.
# Source it: `. ci/env.sh`. Every variable is documented in README.md ("Environment").

# OpenMPI refuses to run as root without both of these.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# No InfiniBand here: do not warn about it.
export OMPI_MCA_btl="${OMPI_MCA_btl:-^openib}"
# More ranks than cores (tests run up to 7 ranks on 2 cores): allow it, yield when idle, and do
# not pin ranks to cores.
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_hwloc_base_binding_policy=none
# Use the Open MPI that ci/install-deps installed (rsmpi's build probes mpicc / pkg-config).
export MPI_PKG_CONFIG="${MPI_PKG_CONFIG:-ompi}"
