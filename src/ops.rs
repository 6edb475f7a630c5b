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

/// `tensors` as the bytes of a safetensors file (each copied to the CPU,
/// its dtype kept), for writers that want the file's bytes, e.g. to write
/// them through [`crate::atomic`] and keep an OS error as a typed cause.
pub fn safetensors_bytes(tensors: &[(&str, &Tensor)]) -> Result<Vec<u8>> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let dtype = match t.kind() {
            tch::Kind::Float => Dtype::F32,
            tch::Kind::Double => Dtype::F64,
            tch::Kind::BFloat16 => Dtype::BF16,
            tch::Kind::Half => Dtype::F16,
            tch::Kind::Int64 => Dtype::I64,
            other => {
                return Err(crate::Error::internal(format!(
                    "tensor `{name}`: no safetensors type for {other:?}"
                )))
            }
        };
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        owned.push((name.to_string(), dtype, shape, data));
    }
    let views = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| crate::Error::internal(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, &None)
        .map_err(|e| crate::Error::internal(format!("safetensors: {e}")))
}
