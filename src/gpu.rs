//! GPU plumbing shared by the guidance and the render: copying host tensors
//! to the GPU without stalling its queue, and the channels-last layout.
//! (On the CPU every function here is a plain copy or a no-op in effect.)

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, Tensor};

use crate::Result;

static ASYNC_UPLOADS: AtomicBool = AtomicBool::new(true);

/// Chooses how [`upload`] copies to a GPU (process-wide; [`crate::render::device::Tuning`] sets it).
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
        let pinned = t.f_contiguous()?.f_pin_memory(device)?;
        Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?)
    } else {
        Ok(t.f_to_device(device)?)
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
                var.set_data(&cl);
            }
        }
        Ok(())
    })
}
