# Eigen's memory layout depends on compile flags: -march=native on an AVX-512 machine aligns
# heap blocks to 64 bytes through Eigen's own aligned_malloc/aligned_free, a baseline x86-64
# build aligns to 16 and uses plain malloc/free, and AddressSanitizer turns plain malloc off
# too. Eigen objects cross the library's interface (Autoencoder, Checkpoint, Normalization hold
# Eigen storage and std::vector<S, Eigen::aligned_allocator<S>>): a block allocated inside
# libaetrain_core and freed by inline code in a program compiled with other flags would go to
# the wrong free(). So the library states its choices as compile definitions that every user
# compiles with, and leaves the flags themselves (-march=native, sanitizers) to its own build.

# Sets <out_var> to the definitions EIGEN_MAX_ALIGN_BYTES, EIGEN_MAX_STATIC_ALIGN_BYTES and
# EIGEN_MALLOC_ALREADY_ALIGNED with the values Eigen picks under the compile flags in ARGN
# (plus CMAKE_CXX_FLAGS). Compiles one file; runs nothing, so it works when cross-compiling.
function(aetrain_eigen_abi_definitions out_var)
  set(flags ${ARGN})
  string(SHA1 key "${CMAKE_CXX_COMPILER};${CMAKE_CXX_FLAGS};${flags};${Eigen3_VERSION}")
  if(DEFINED AETRAIN_EIGEN_ABI_KEY AND AETRAIN_EIGEN_ABI_KEY STREQUAL key)
    set(${out_var} ${AETRAIN_EIGEN_ABI} PARENT_SCOPE)
    return()
  endif()
  set(dir ${CMAKE_BINARY_DIR}/CMakeFiles/aetrain_eigen_abi)
  file(WRITE ${dir}/probe.cpp [=[
#include <Eigen/Core>
#define AETRAIN_STR2(x) #x
#define AETRAIN_STR(x) AETRAIN_STR2(x)
extern "C" const char aetrain_eigen_abi[] =
    "AETRAIN_EIGEN_ABI[" AETRAIN_STR(EIGEN_MAX_ALIGN_BYTES) ":"
    AETRAIN_STR(EIGEN_MAX_STATIC_ALIGN_BYTES) ":" AETRAIN_STR(EIGEN_MALLOC_ALREADY_ALIGNED) "]";
]=])
  # A static library: nothing is linked, so sanitizer runtimes are not needed.
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  try_compile(compiled ${dir}/build SOURCES ${dir}/probe.cpp
              COMPILE_DEFINITIONS ${flags}
              LINK_LIBRARIES Eigen3::Eigen
              CXX_STANDARD 20
              OUTPUT_VARIABLE log
              COPY_FILE ${dir}/probe.a)
  if(NOT compiled)
    message(FATAL_ERROR "Could not compile a file with Eigen and ${flags}:\n${log}")
  endif()
  file(STRINGS ${dir}/probe.a found REGEX "AETRAIN_EIGEN_ABI\\[[0-9]+:[0-9]+:[0-9]+\\]")
  if(NOT found MATCHES "AETRAIN_EIGEN_ABI\\[([0-9]+):([0-9]+):([0-9]+)\\]")
    message(FATAL_ERROR "No Eigen alignment values in ${dir}/probe.a")
  endif()
  set(abi EIGEN_MAX_ALIGN_BYTES=${CMAKE_MATCH_1} EIGEN_MAX_STATIC_ALIGN_BYTES=${CMAKE_MATCH_2}
          EIGEN_MALLOC_ALREADY_ALIGNED=${CMAKE_MATCH_3})
  message(STATUS "Eigen's alignment in aetrain_core and its users: ${abi}")
  set(AETRAIN_EIGEN_ABI_KEY ${key} CACHE INTERNAL "")
  set(AETRAIN_EIGEN_ABI ${abi} CACHE INTERNAL "")
  set(${out_var} ${abi} PARENT_SCOPE)
endfunction()
