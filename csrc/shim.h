// The C++ shim's error convention (csrc/*.cpp, read by src/gpu.rs): every
// exported function catches C++ exceptions and hands the message back as a
// malloc'd C string, which the caller frees with zt_free_string.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace zt {

// A malloc'd copy of `s` (null if out of memory).
inline char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// Runs `f`; 0 on success, 1 with `*err` set to the exception's message.
template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    if (err) *err = dup(e.what());
  } catch (...) {
    if (err) *err = dup("unknown C++ exception");
  }
  return 1;
}

}  // namespace zt
