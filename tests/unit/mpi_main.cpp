// GoogleTest main for binaries that may run under mpiexec: MPI lives for the whole run.
#include <gtest/gtest.h>

#include "aetrain/comm.hpp"

int main(int argc, char** argv) {
  aetrain::MpiSession mpi(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
