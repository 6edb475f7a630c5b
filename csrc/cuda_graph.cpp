// CUDA graphs and caching-allocator statistics for zoetrope (src/gpu.rs).
//
// tch exposes neither, and both matter for the step's speed on a GPU: a step
// launches about a thousand small kernels, and each launch costs the host more
// than the kernel costs the GPU. Captured once into a CUDA graph, a step is
// one launch. Errors follow shim.h's convention; zt_free_string (rng.cpp)
// frees their messages.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "shim.h"

namespace {

using zt::guarded;

struct ZtGraph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStream> previous;
  explicit ZtGraph(c10::DeviceIndex device)
      : graph(), side(c10::cuda::getStreamFromPool(false, device)) {}
};

}  // namespace

extern "C" {

void* zt_graph_new(int device, char** err) {
  ZtGraph* g = nullptr;
  guarded(err, [&] { g = new ZtGraph(static_cast<c10::DeviceIndex>(device)); });
  return g;
}

void zt_graph_free(void* g) { delete static_cast<ZtGraph*>(g); }

// Makes the graph's side stream the current stream (capture cannot run on the
// default stream), after the work queued so far (cudart itself is not linked:
// only libtorch's exported helpers are used).
int zt_graph_enter_side_stream(void* gp, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<ZtGraph*>(gp);
    auto current = c10::cuda::getCurrentCUDAStream(g->side.device_index());
    g->previous = current;
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(g->side);
  });
}

// Back to the stream that was current before, after the side stream's work.
int zt_graph_leave_side_stream(void* gp, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<ZtGraph*>(gp);
    c10::cuda::device_synchronize();
    if (g->previous) c10::cuda::setCurrentCUDAStream(*g->previous);
    g->previous.reset();
  });
}

int zt_graph_capture_begin(void* gp, char** err) {
  return guarded(err, [&] { static_cast<ZtGraph*>(gp)->graph.capture_begin(); });
}

int zt_graph_capture_end(void* gp, char** err) {
  return guarded(err, [&] { static_cast<ZtGraph*>(gp)->graph.capture_end(); });
}

// Launches the captured work on the current stream.
int zt_graph_replay(void* gp, char** err) {
  return guarded(err, [&] { static_cast<ZtGraph*>(gp)->graph.replay(); });
}

// Bytes: current and peak allocated, current and peak reserved.
int zt_cuda_memory_stats(int device, int64_t* out, char** err) {
  return guarded(err, [&] {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        static_cast<c10::DeviceIndex>(device));
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = stats.allocated_bytes[all].current;
    out[1] = stats.allocated_bytes[all].peak;
    out[2] = stats.reserved_bytes[all].current;
    out[3] = stats.reserved_bytes[all].peak;
  });
}

// A pinned (page-locked) copy of a CPU tensor, through libtorch's caching
// host allocator. tch's binding passes the deprecated device argument, which
// makes libtorch print a warning on every call.
void* zt_pin_memory(void* tensor, char** err) {
  at::Tensor* out = nullptr;
  guarded(err, [&] { out = new at::Tensor(static_cast<at::Tensor*>(tensor)->pin_memory()); });
  return out;
}

// cuDNN restricted to algorithms whose results do not depend on scheduling
// (libtorch's torch.backends.cudnn.deterministic), for `--tune deterministic`.
int zt_set_cudnn_deterministic(int on, char** err) {
  return guarded(err, [&] { at::globalContext().setDeterministicCuDNN(on != 0); });
}

int zt_cuda_empty_cache(char** err) {
  return guarded(err, [&] { c10::cuda::CUDACachingAllocator::emptyCache(); });
}

int zt_cuda_reset_peak_memory(int device, char** err) {
  return guarded(err, [&] {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

}  // extern "C"
