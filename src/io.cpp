#include "aetrain/io.hpp"

#include "h5.hpp"

namespace aetrain {

std::string hdf5_library_version() { return h5::library_version(); }

bool close_io() { return h5::close_library(); }

}  // namespace aetrain
