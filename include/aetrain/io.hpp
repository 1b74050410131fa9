// The I/O layer as a whole: the HDF5 library it runs on, and its shutdown.
#pragma once

#include <string>

namespace aetrain {

/// The HDF5 library, e.g. "1.10.8 (parallel)".
std::string hdf5_library_version();

/// Closes every HDF5 object still open and shuts HDF5 down: call it at the end, before MPI ends
/// (MPI_Finalize would do it otherwise, with nobody left to hear of a failure). False when HDF5
/// holds a file it failed to close, whose shutdown would crash (h5::close_library): the process
/// must then end without MPI_Finalize (Comm::abort).
bool close_io();

}  // namespace aetrain
