//! Fallible forms of the few tensor helpers tch offers only as panicking
//! methods, so that an allocation failure comes back as an error.

use tch::Tensor;

use crate::Result;

/// A copy of `t` on its own storage (tch's `Tensor::copy`, fallible).
pub fn copy(t: &Tensor) -> Result<Tensor> {
    let mut out = t.f_zeros_like()?;
    out.f_copy_(t)?;
    Ok(out)
}
