//! Frozen-weight convolutions that keep less for the backward pass.
//!
//! Guidance back-propagates through the VQGAN decoder every step, but only
//! to the latent: no weight gets a gradient. libtorch's autograd still keeps
//! every convolution's input (it is needed for the weight gradient), so a
//! `GroupNorm → SiLU → conv` chain keeps three activation maps, and the
//! decoder's full-resolution levels dominate a step's memory (at 512 × 512
//! one 128-channel bf16 map is 64 MiB). `conv` computes the same chain as
//! one autograd node (the C++ shim's `LeanConv`, `csrc/lean_ops.cpp`) that
//! keeps only the norm's input and statistics and recomputes the SiLU's
//! input in the backward pass from one per-channel scale and shift: one map
//! instead of three, and none at all for a bare convolution (the decoder's
//! up-sampling convolutions, whose input is 4× their block's map).
//!
//! Chosen per model when it is built
//! ([`crate::models::ModelOptions::lean_activations`], from
//! [`crate::tuning::Tuning`]'s `lean-activations`); without the shim
//! (a libtorch without CUDA, or headers missing at build time) the layers
//! take libtorch's path and nothing else changes.

#[cfg(zoetrope_shim)]
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

/// A group norm's parameters for [`conv`]: affine weight and bias, number of
/// groups, epsilon.
pub(crate) struct Norm<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub groups: i64,
    pub eps: f64,
}

/// A convolution for [`conv`]: weight, bias, square stride and padding (no
/// dilation, one group).
#[derive(Clone, Copy)]
pub(crate) struct Conv<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub stride: i64,
    pub padding: i64,
}

/// `conv2d(silu(group_norm(x)), weight, bias)` with `norm`, or
/// `conv2d(x, weight, bias)` without, as one autograd node that keeps only
/// what the input gradient needs (module doc).
///
/// `None` where it does not apply, so the caller takes libtorch's path:
/// switched off, shim not built, `x` needs no gradient (nothing would be
/// saved anyway), or a weight that is trainable (its gradient would be
/// lost), or should the shim fail (said once on stderr) for any reason but
/// memory running out, which is returned as the error it is.
pub(crate) fn conv(
    x: &Tensor,
    norm: Option<Norm>,
    c: Conv,
    enabled: bool,
) -> Option<crate::Result<Tensor>> {
    let trainable = c.weight.requires_grad()
        || c.bias.is_some_and(Tensor::requires_grad)
        || norm
            .as_ref()
            .is_some_and(|n| n.weight.requires_grad() || n.bias.requires_grad());
    if !enabled || !crate::gpu::shim_built() || !x.requires_grad() || trainable {
        return None;
    }
    // Should the shim fail, libtorch's path takes over (and reports a real
    // problem with the input in its own words); say once that it happened,
    // since the memory saving is then gone.
    #[cfg(zoetrope_shim)]
    return match shim_conv(x, norm, c, false) {
        Ok(y) => Some(Ok(y)),
        Err(e) if e.kind == crate::ErrorKind::OutOfMemory => Some(Err(e)),
        Err(e) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                // libtorch's messages go on with a C++ backtrace: the first line says it.
                let first = e.message.lines().next().unwrap_or_default();
                eprintln!(
                    "warning: lean activations unavailable, libtorch's path is used: {first}"
                );
            }
            None
        }
    };
    #[cfg(not(zoetrope_shim))]
    {
        let _ = (c.stride, c.padding, norm.map(|n| (n.groups, n.eps)));
        None
    }
}

/// The shim's node; `reduce_stats` takes the norm's statistics the way it
/// does on a GPU (one whole-tensor reduction) on any device, which is how
/// the tests reach that path on the CPU.
#[cfg(zoetrope_shim)]
fn shim_conv(x: &Tensor, norm: Option<Norm>, c: Conv, reduce_stats: bool) -> crate::Result<Tensor> {
    use std::ffi::c_void;
    let ptr = |t: &Tensor| t.as_ptr() as *mut c_void;
    let null = std::ptr::null_mut::<c_void>();
    let (gamma, beta, groups, eps) = match &norm {
        Some(n) => (ptr(n.weight), ptr(n.bias), n.groups, n.eps),
        None => (null, null, 0, 0.0),
    };
    let mut err = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor* (or null where the shim
    // accepts null) borrowed for the call; the shim returns a new
    // heap-allocated at::Tensor* or null with `err` set.
    let out = unsafe {
        crate::gpu::ffi::zt_lean_conv(
            ptr(x),
            gamma,
            beta,
            ptr(c.weight),
            c.bias.map_or(null, ptr),
            groups,
            eps,
            c.stride,
            c.padding,
            reduce_stats.into(),
            &mut err,
        )
    };
    let y = crate::gpu::ffi::tensor("lean convolution", out, err)?;
    #[cfg(test)]
    tests::SHIM_CALLS.with(|c| c.set(c.get() + 1));
    Ok(y)
}

#[cfg(all(test, zoetrope_shim))]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;
    use tch::Kind;

    thread_local! {
        /// Lean nodes made so far on this thread (each test has its own).
        pub(crate) static SHIM_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn shim_calls() -> usize {
        SHIM_CALLS.with(Cell::get)
    }

    fn conv3<'a>(weight: &'a Tensor, bias: &'a Tensor) -> Conv<'a> {
        Conv {
            weight,
            bias: Some(bias),
            stride: 1,
            padding: 1,
        }
    }

    /// The lean node gives libtorch's values and input gradients (float32,
    /// NCHW and channels-last, with and without the norm, the norm's
    /// statistics the CPU's way and the GPU's way), in bf16 to bf16
    /// rounding, and leaves frozen weights without gradient.
    #[test]
    fn lean_conv_matches_libtorch() {
        let mut rng = crate::rng::Rng::new(3).unwrap();
        let mut randn = |size: &[i64]| rng.randn(size).unwrap();
        let x0 = randn(&[2, 64, 9, 7]) * 2.0 + 0.5;
        let gamma = randn(&[64]);
        let beta = randn(&[64]);
        let w = randn(&[48, 64, 3, 3]) * 0.05;
        let b = randn(&[48]);
        for (with_norm, channels_last, kind, reduce) in [
            (true, false, Kind::Float, false),
            (true, false, Kind::Float, true),
            (false, false, Kind::Float, false),
            (true, true, Kind::Float, false),
            (true, true, Kind::Float, true),
            (true, false, Kind::BFloat16, false),
            (true, false, Kind::BFloat16, true),
            (false, false, Kind::BFloat16, false),
        ] {
            let case = format!(
                "norm {with_norm}, channels-last {channels_last}, {kind:?}, reduced stats {reduce}"
            );
            let layout = |t: &Tensor| {
                if channels_last {
                    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
                } else {
                    t.shallow_clone()
                }
            };
            let (w, b, gamma, beta) = (
                w.to_kind(kind),
                b.to_kind(kind),
                gamma.to_kind(kind),
                beta.to_kind(kind),
            );
            let x = layout(&x0.to_kind(kind));
            let g = randn(&[2, 48, 9, 7]).to_kind(kind);
            let plain_forward = |x: &Tensor| {
                let h = if with_norm {
                    x.group_norm(32, Some(&gamma), Some(&beta), 1e-6, true)
                        .silu()
                } else {
                    x.shallow_clone()
                };
                h.conv2d(&w, Some(&b), [1, 1], [1, 1], [1, 1], 1)
            };
            let xr = x.detach().set_requires_grad(true);
            let yr = plain_forward(&xr);
            let gr = Tensor::run_backward(&[(&yr * &g).sum(Kind::Float)], &[&xr], false, false);

            let xl = x.detach().set_requires_grad(true);
            let norm = with_norm.then_some(Norm {
                weight: &gamma,
                bias: &beta,
                groups: 32,
                eps: 1e-6,
            });
            let yl = shim_conv(&xl, norm, conv3(&w, &b), reduce).unwrap();
            let gl = Tensor::run_backward(&[(&yl * &g).sum(Kind::Float)], &[&xl], false, false);

            let rel = |a: &Tensor, r: &Tensor| {
                let a = a.to_kind(Kind::Float);
                let r = r.to_kind(Kind::Float);
                (&a - &r).abs().max().double_value(&[]) / r.abs().max().double_value(&[])
            };
            let tol = if kind == Kind::Float { 1e-5 } else { 2e-2 };
            let (ey, eg) = (rel(&yl, &yr), rel(&gl[0], &gr[0]));
            assert!(ey < tol, "{case}: output error {ey}");
            assert!(eg < tol, "{case}: gradient error {eg}");
            assert_eq!(gl[0].size(), x.size(), "{case}");
            assert_eq!(gl[0].kind(), kind, "{case}");
        }
        // Frozen weights stay without gradient; trainable ones are refused.
        let x = x0.detach().set_requires_grad(true);
        let y = shim_conv(&x, None, conv3(&w, &b), false).unwrap();
        y.sum(Kind::Float).backward();
        assert!(!w.grad().defined());
        let trainable = w.detach().set_requires_grad(true);
        assert!(conv(&x, None, conv3(&trainable, &b), true).is_none());
        // Nothing to save without a gradient: libtorch's path.
        assert!(conv(&x0, None, conv3(&w, &b), true).is_none());
    }
}
