// Built into every executable of a sanitizer build (AETRAIN_SANITIZE): the sanitizers' defaults,
// so that a bare run (ctest's test discovery included) needs no environment.

// No leak detection: Open MPI unloads its plug-ins in MPI_Finalize, so the allocations they
// keep until exit show up as leaks of "<unknown module>" that no suppression can name.
// AddressSanitizer still checks every access; our own memory is held by RAII owners.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1"; }
