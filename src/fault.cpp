#include "aetrain/fault.hpp"

#include <cstdlib>
#include <string>

namespace aetrain {
namespace detail {

bool faults_armed = false;

namespace {
std::string armed_point;
long armed_occurrence = 1, seen = 0;
}  // namespace

bool fault_hit(std::string_view point) {
  return point == armed_point && ++seen == armed_occurrence;
}

}  // namespace detail

void arm_faults(int rank) {
  const char* spec = std::getenv("AETRAIN_FAULT");
  if (!spec || !*spec) return;
  std::string s = spec;
  if (const size_t colon = s.find(':'); colon != std::string::npos) {
    detail::armed_occurrence = std::atol(s.c_str() + colon + 1);
    s.resize(colon);
  }
  if (const size_t at = s.find('@'); at != std::string::npos) {
    if (std::atoi(s.c_str() + at + 1) != rank) return;
    s.resize(at);
  }
  detail::armed_point = s;
  detail::faults_armed = true;
}

}  // namespace aetrain
