//! GPU plumbing shared by the models, the guidance and the render: copying
//! host tensors to the GPU without stalling its queue, the channels-last
//! layout, CUDA graphs, libtorch's allocator statistics, and the Rust side of
//! the C++ shim (`csrc/`) that provides the last two and the lean
//! convolutions. (On the CPU every function here is a plain copy or a no-op
//! in effect.)

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, Tensor};

use crate::Result;

static ASYNC_UPLOADS: AtomicBool = AtomicBool::new(true);

/// Chooses how [`upload`] copies to a GPU (process-wide; [`crate::render::device::apply_device_switches`] sets it from [`crate::tuning::Tuning`]).
pub fn set_async_uploads(on: bool) {
    ASYNC_UPLOADS.store(on, Ordering::Relaxed);
}

/// Copies a small host tensor to `device`. On CUDA a plain copy makes the host
/// wait until the GPU has finished everything queued before it (libtorch
/// synchronises the stream after a pageable copy), which leaves the GPU idle
/// while the host queues the next kernels. With async uploads on, the tensor
/// is staged in pinned memory (libtorch's caching host allocator keeps the
/// block until the copy has run) and copied without waiting.
pub fn upload(t: &Tensor, device: Device) -> Result<Tensor> {
    if t.device() == device || !device.is_cuda() {
        return Ok(t.f_to_device(device)?);
    }
    if ASYNC_UPLOADS.load(Ordering::Relaxed) {
        // Should pinning fail (no page-locked memory left), the plain copy
        // is still right, only slower.
        match pin(&t.f_contiguous()?) {
            Ok(pinned) => Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?),
            Err(_) => Ok(t.f_to_device(device)?),
        }
    } else {
        Ok(t.f_to_device(device)?)
    }
}

/// A pinned copy of a CPU tensor (through the shim where built, without the
/// deprecation warning tch's binding triggers on every call).
fn pin(t: &Tensor) -> Result<Tensor> {
    #[cfg(zoetrope_shim)]
    {
        let mut err = std::ptr::null_mut();
        // SAFETY: `as_ptr` is a live at::Tensor*; the shim returns a new
        // heap-allocated at::Tensor* (owned by the returned Tensor) or null
        // with `err` set.
        let ptr = unsafe { ffi::zt_pin_memory(t.as_ptr() as *mut std::ffi::c_void, &mut err) };
        ffi::tensor("pinning host memory", ptr, err)
    }
    #[cfg(not(zoetrope_shim))]
    {
        Ok(t.f_pin_memory(Device::Cuda(0))?)
    }
}

/// Blocks until `device` has finished its queued work (a no-op on the CPU).
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Rewrites every 4-D variable of `vs` (the convolution kernels) in
/// channels-last layout, keeping the variables themselves (their shallow
/// clones inside the layers see the new layout). Values are unchanged.
pub fn make_channels_last(vs: &tch::nn::VarStore) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for (_, var) in vs.variables() {
            if var.dim() == 4 {
                let cl = var
                    .f_permute([0, 2, 3, 1])?
                    .f_contiguous()?
                    .f_permute([0, 3, 1, 2])?;
                let mut var = var.shallow_clone();
                var.f_set_data(&cl)?;
            }
        }
        Ok(())
    })
}

/// Whether this build has the C++ shim (`csrc/`: CUDA graphs, allocator
/// statistics, lean convolutions), which needs libtorch's CUDA build and the
/// CUDA headers at build time.
pub fn shim_built() -> bool {
    cfg!(zoetrope_shim)
}

#[cfg(zoetrope_shim)]
pub(crate) mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub fn zt_free_string(s: *mut c_char);
        pub fn zt_graph_new(device: c_int, err: *mut *mut c_char) -> *mut c_void;
        pub fn zt_graph_free(g: *mut c_void);
        pub fn zt_graph_enter_side_stream(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn zt_graph_leave_side_stream(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn zt_graph_capture_begin(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn zt_graph_capture_end(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn zt_graph_replay(g: *mut c_void, err: *mut *mut c_char) -> c_int;
        pub fn zt_cuda_memory_stats(device: c_int, out: *mut i64, err: *mut *mut c_char) -> c_int;
        pub fn zt_cuda_empty_cache(err: *mut *mut c_char) -> c_int;
        pub fn zt_set_cudnn_deterministic(on: c_int, err: *mut *mut c_char) -> c_int;
        pub fn zt_pin_memory(tensor: *mut c_void, err: *mut *mut c_char) -> *mut c_void;
        pub fn zt_cuda_reset_peak_memory(device: c_int, err: *mut *mut c_char) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn zt_lean_conv(
            x: *mut c_void,
            gamma: *mut c_void,
            beta: *mut c_void,
            weight: *mut c_void,
            bias: *mut c_void,
            groups: i64,
            eps: f64,
            stride: i64,
            padding: i64,
            reduce_stats: c_int,
            err: *mut *mut c_char,
        ) -> *mut c_void;
    }

    /// Runs a shim call and turns its error string into an error.
    pub fn check(what: &str, f: impl FnOnce(*mut *mut c_char) -> c_int) -> crate::Result<()> {
        let mut err: *mut c_char = std::ptr::null_mut();
        if f(&mut err) == 0 {
            return Ok(());
        }
        Err(error(what, err))
    }

    /// The tensor a shim call returned (`ptr`, a fresh heap-allocated
    /// at::Tensor* that nothing else owns), or its error when `ptr` is null.
    pub fn tensor(what: &str, ptr: *mut c_void, err: *mut c_char) -> crate::Result<tch::Tensor> {
        if ptr.is_null() {
            return Err(error(what, err));
        }
        // SAFETY: see above; the returned Tensor owns and frees it.
        Ok(unsafe { tch::Tensor::from_ptr(ptr as *mut torch_sys::C_tensor) })
    }

    /// The error of a failed shim call from its message `err` (a malloc'd
    /// string, freed here, or null).
    pub fn error(what: &str, err: *mut c_char) -> crate::Error {
        let msg = if err.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: the shim returns a malloc'd NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned();
            unsafe { zt_free_string(err) };
            s
        };
        crate::Error::libtorch(what, &msg)
    }
}

/// One CUDA graph (libtorch's `at::cuda::CUDAGraph`): the kernels a closure
/// launches, captured once and replayed as a single launch. Tensors the
/// captured work allocates live in the graph's private memory pool and are
/// rewritten by every replay; tensors it reads from outside must stay alive,
/// at the same address, for as long as the graph is replayed.
#[derive(Debug)]
pub struct CudaGraph {
    #[cfg(zoetrope_shim)]
    ptr: *mut std::ffi::c_void,
}

impl CudaGraph {
    /// Captures the work `f` launches on `device` (run on a side stream, as
    /// capture requires; nothing is executed until [`replay`](Self::replay)).
    /// `f` must not wait on the GPU or copy from the host.
    pub fn capture<T>(device: Device, f: impl FnOnce() -> Result<T>) -> Result<(CudaGraph, T)> {
        #[cfg(zoetrope_shim)]
        {
            let Device::Cuda(index) = device else {
                return Err(crate::Error::internal("CUDA graphs need a CUDA device"));
            };
            let mut err = std::ptr::null_mut();
            // SAFETY: plain constructor; null means failure with `err` set.
            let ptr = unsafe { ffi::zt_graph_new(index as i32, &mut err) };
            if ptr.is_null() {
                return Err(ffi::error("creating a CUDA graph", err));
            }
            let graph = CudaGraph { ptr };
            // SAFETY (all calls below): `ptr` is a live graph owned by `graph`.
            ffi::check("entering the capture stream", |e| unsafe {
                ffi::zt_graph_enter_side_stream(ptr, e)
            })?;
            let begun = ffi::check("beginning a CUDA graph capture", |e| unsafe {
                ffi::zt_graph_capture_begin(ptr, e)
            });
            let result = match begun {
                Ok(()) => {
                    let out = f();
                    let ended = ffi::check("ending a CUDA graph capture", |e| unsafe {
                        ffi::zt_graph_capture_end(ptr, e)
                    });
                    out.and_then(|v| ended.map(|()| v))
                }
                Err(e) => Err(e),
            };
            let left = ffi::check("leaving the capture stream", |e| unsafe {
                ffi::zt_graph_leave_side_stream(ptr, e)
            });
            let value = result?;
            left?;
            Ok((graph, value))
        }
        #[cfg(not(zoetrope_shim))]
        {
            let _ = (device, f);
            Err(crate::Error::internal(
                "this build of zoetrope has no CUDA graph support (built without the CUDA headers)",
            ))
        }
    }

    /// Launches the captured work on the current stream.
    pub fn replay(&self) -> Result<()> {
        #[cfg(zoetrope_shim)]
        {
            // SAFETY: `ptr` is a live, captured graph.
            ffi::check("replaying a CUDA graph", |e| unsafe {
                ffi::zt_graph_replay(self.ptr, e)
            })
        }
        #[cfg(not(zoetrope_shim))]
        {
            Err(crate::Error::internal(
                "no CUDA graph support in this build",
            ))
        }
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(zoetrope_shim)]
        // SAFETY: `ptr` came from zt_graph_new and is freed once, here.
        unsafe {
            ffi::zt_graph_free(self.ptr)
        };
    }
}

/// libtorch's caching-allocator figures for one GPU, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated: i64,
    pub peak_allocated: i64,
    pub reserved: i64,
    pub peak_reserved: i64,
}

impl MemoryStats {
    /// [`peak_allocated`](Self::peak_allocated) in MiB, as reports give it.
    pub fn peak_allocated_mib(&self) -> f64 {
        self.peak_allocated as f64 / MIB
    }

    /// [`peak_reserved`](Self::peak_reserved) in MiB.
    pub fn peak_reserved_mib(&self) -> f64 {
        self.peak_reserved as f64 / MIB
    }
}

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// The caching allocator's statistics of `device` (`None` on the CPU or in a
/// build without the shim).
pub fn memory_stats(device: Device) -> Option<MemoryStats> {
    #[cfg(zoetrope_shim)]
    {
        let Device::Cuda(index) = device else {
            return None;
        };
        let mut out = [0i64; 4];
        // SAFETY: `out` has the four slots the shim writes.
        ffi::check("reading CUDA memory statistics", |e| unsafe {
            ffi::zt_cuda_memory_stats(index as i32, out.as_mut_ptr(), e)
        })
        .ok()?;
        Some(MemoryStats {
            allocated: out[0],
            peak_allocated: out[1],
            reserved: out[2],
            peak_reserved: out[3],
        })
    }
    #[cfg(not(zoetrope_shim))]
    {
        let _ = device;
        None
    }
}

/// Resets the peak figures of [`memory_stats`] (no-op where unavailable).
pub fn reset_peak_memory(device: Device) {
    #[cfg(zoetrope_shim)]
    if let Device::Cuda(index) = device {
        // SAFETY: plain call; errors are ignored (statistics only).
        let _ = ffi::check("resetting CUDA memory statistics", |e| unsafe {
            ffi::zt_cuda_reset_peak_memory(index as i32, e)
        });
    }
    #[cfg(not(zoetrope_shim))]
    let _ = device;
}

/// Restricts cuDNN to deterministic algorithms (on) or lets it choose freely
/// (off). `false` where that cannot be set: a build without the shim (tch has
/// no binding for it), or should the call fail.
pub fn set_cudnn_deterministic(on: bool) -> bool {
    #[cfg(zoetrope_shim)]
    {
        // SAFETY: plain call.
        ffi::check("setting cuDNN's deterministic mode", |e| unsafe {
            ffi::zt_set_cudnn_deterministic(on as i32, e)
        })
        .is_ok()
    }
    #[cfg(not(zoetrope_shim))]
    {
        let _ = on;
        false
    }
}

/// Returns the caching allocator's unused blocks to the driver (after a
/// capture, the eager steps' cached blocks are dead weight beside the graph's
/// own pool).
pub fn empty_cache(device: Device) {
    #[cfg(zoetrope_shim)]
    if device.is_cuda() {
        // SAFETY: plain call; errors are ignored (memory hygiene only).
        let _ = ffi::check("emptying the CUDA cache", |e| unsafe {
            ffi::zt_cuda_empty_cache(e)
        });
    }
    #[cfg(not(zoetrope_shim))]
    let _ = device;
}

/// Device memory in use as the CUDA driver sees it, through `cuMemGetInfo`
/// from `libcuda.so.1` opened at run time (tch exposes no allocator
/// statistics, and linking the driver would break CPU-only machines).
pub mod driver {
    use std::ffi::{c_char, c_int, c_void, CString};
    use tch::Device;

    extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    const RTLD_NOW: c_int = 2;
    const CUDA_ERROR_INVALID_CONTEXT: c_int = 201;

    type Init = unsafe extern "C" fn(u32) -> c_int;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
    type PrimaryCtxRetain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;
    type CtxPush = unsafe extern "C" fn(*mut c_void) -> c_int;
    type CtxPop = unsafe extern "C" fn(*mut *mut c_void) -> c_int;
    type PrimaryCtxRelease = unsafe extern "C" fn(c_int) -> c_int;

    fn sym(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
        let name = CString::new(name).ok()?;
        // SAFETY: `handle` is a live dlopen handle and `name` a C string.
        let p = unsafe { dlsym(handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    /// `total − free` bytes of device `device`, or `None` on the CPU or
    /// when the driver cannot be asked.
    pub fn used_bytes(device: Device) -> Option<u64> {
        let Device::Cuda(index) = device else {
            return None;
        };
        let lib = CString::new("libcuda.so.1").ok()?;
        // SAFETY: dlopen with a valid C string; the handle is never closed
        // (the driver stays loaded for the process anyway).
        let handle = unsafe { dlopen(lib.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: the symbols have the driver API's documented signatures.
        unsafe {
            // Idempotent; needed when libtorch has not touched the driver yet.
            let init: Init = std::mem::transmute(sym(handle, "cuInit")?);
            if init(0) != 0 {
                return None;
            }
            let get: MemGetInfo = std::mem::transmute(sym(handle, "cuMemGetInfo_v2")?);
            let (mut free, mut total) = (0usize, 0usize);
            let rc = get(&mut free, &mut total);
            if rc == 0 {
                return Some((total - free) as u64);
            }
            if rc != CUDA_ERROR_INVALID_CONTEXT {
                return None;
            }
            // No current context on this thread: use the device's primary
            // context (the one libtorch's runtime calls use).
            let retain: PrimaryCtxRetain =
                std::mem::transmute(sym(handle, "cuDevicePrimaryCtxRetain")?);
            let push: CtxPush = std::mem::transmute(sym(handle, "cuCtxPushCurrent_v2")?);
            let pop: CtxPop = std::mem::transmute(sym(handle, "cuCtxPopCurrent_v2")?);
            let release: PrimaryCtxRelease =
                std::mem::transmute(sym(handle, "cuDevicePrimaryCtxRelease_v2")?);
            let mut ctx = std::ptr::null_mut();
            if retain(&mut ctx, index as c_int) != 0 {
                return None;
            }
            let ok = push(ctx) == 0 && get(&mut free, &mut total) == 0;
            let mut popped = std::ptr::null_mut();
            pop(&mut popped);
            release(index as c_int);
            ok.then_some((total - free) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU every entry point answers instead of failing hard: graphs
    /// are refused with a message, statistics are absent, uploads are copies.
    #[test]
    fn cpu_answers_without_a_gpu() {
        let e = CudaGraph::capture(Device::Cpu, || Ok(1)).unwrap_err();
        assert!(e.message.contains("CUDA"), "{e}");
        assert!(memory_stats(Device::Cpu).is_none());
        reset_peak_memory(Device::Cpu);
        empty_cache(Device::Cpu);
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        assert!(upload(&t, Device::Cpu).unwrap().equal(&t));
    }
}
