// Explicit random generators for zoetrope (src/rng.rs), built on every
// machine (CPU-only libtorch included): tch binds only libtorch's global
// generator, which every thread of a process shares, so two renders (or two
// tests) in one process would draw from each other's stream. An ATen CPU
// generator made here with seed s yields exactly the numbers
// `torch.manual_seed(s)` then the same draws from the default generator
// yield. Errors follow shim.h's convention; zt_free_string frees them.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>

#include "shim.h"

using zt::guarded;

extern "C" {

void zt_free_string(char* s) { std::free(s); }

void* zt_cpu_generator_new(uint64_t seed, char** err) {
  at::Generator* g = nullptr;
  guarded(err, [&] {
    g = new at::Generator(at::make_generator<at::CPUGeneratorImpl>(seed));
  });
  return g;
}

void zt_generator_free(void* g) { delete static_cast<at::Generator*>(g); }

// A CPU tensor of `dtype` (a c10::ScalarType value) and shape `sizes` drawn
// from `g`: `what` 0 = uniform [0, 1), 1 = standard normal, 2 = integers
// uniform in [0, high). Returns a new heap-allocated at::Tensor* or null.
void* zt_generator_draw(void* g, int what, int64_t high, const int64_t* sizes,
                        int ndim, int dtype, char** err) {
  at::Tensor* out = nullptr;
  guarded(err, [&] {
    auto& gen = *static_cast<at::Generator*>(g);
    at::IntArrayRef size(sizes, static_cast<size_t>(ndim));
    auto opts = at::TensorOptions()
                    .dtype(static_cast<c10::ScalarType>(dtype))
                    .device(at::kCPU);
    at::Tensor t;
    switch (what) {
      case 0:
        t = at::rand(size, gen, opts);
        break;
      case 1:
        t = at::randn(size, gen, opts);
        break;
      case 2:
        t = at::randint(high, size, gen, opts);
        break;
      default:
        throw std::invalid_argument("unknown draw");
    }
    out = new at::Tensor(std::move(t));
  });
  return out;
}

}  // extern "C"
