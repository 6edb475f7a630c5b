//! Choosing the torch device and the compute precision from the scene's
//! `device` and `precision` settings.

use crate::{Error, Result};
use tch::{Device, Kind};

/// Resolves `device` (`auto`, `cpu`, `cuda`, `cuda:N`) to a torch device.
///
/// `auto` picks the first GPU when libtorch sees one, else the CPU. Asking for
/// CUDA on a machine without it is an error that says so, rather than a silent
/// CPU run that would take hours.
pub fn resolve_device(setting: &str) -> Result<Device> {
    let s = setting.trim().to_ascii_lowercase();
    let cuda_count = tch::Cuda::device_count() as usize;
    let need_cuda = |i: usize| -> Result<Device> {
        if i < cuda_count {
            Ok(Device::Cuda(i))
        } else if cuda_count == 0 {
            Err(Error::input(format!(
                "setting `device = \"{setting}\"`: no CUDA GPU is visible to libtorch on this machine; use `device = \"cpu\"` or \"auto\""
            )))
        } else {
            Err(Error::input(format!(
                "setting `device = \"{setting}\"`: this machine has {cuda_count} CUDA device(s), numbered 0..{}",
                cuda_count - 1
            )))
        }
    };
    match s.as_str() {
        "auto" => Ok(if cuda_count > 0 { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => need_cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => need_cuda(i),
            _ => Err(Error::input(format!(
                "setting `device = \"{setting}\"`: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
            ))),
        },
    }
}

/// Resolves `precision` (`auto`, `fp32`, `bf16`) for a device to the kind the
/// models compute in. `auto` is bf16 mixed precision on CUDA and fp32 on the CPU,
/// where bf16 matrix work is slow.
pub fn resolve_precision(setting: &str, device: Device) -> Result<Kind> {
    match setting.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(if device.is_cuda() {
            Kind::BFloat16
        } else {
            Kind::Float
        }),
        "fp32" | "float32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        _ => Err(Error::input(format!(
            "setting `precision = \"{setting}\"`: expected \"auto\", \"fp32\" or \"bf16\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_resolve() {
        assert_eq!(resolve_device("cpu").unwrap(), Device::Cpu);
        let auto = resolve_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
        assert_eq!(resolve_precision("auto", Device::Cpu).unwrap(), Kind::Float);
        assert_eq!(
            resolve_precision("auto", Device::Cuda(0)).unwrap(),
            Kind::BFloat16
        );
        assert_eq!(
            resolve_precision("BF16", Device::Cpu).unwrap(),
            Kind::BFloat16
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = resolve_device("gpu").unwrap_err();
        assert!(e.message.contains("`device = \"gpu\"`"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e = resolve_precision("fp8", Device::Cpu).unwrap_err();
        assert!(e.message.contains("precision"), "{e}");
        if !tch::Cuda::is_available() {
            let e = resolve_device("cuda:0").unwrap_err();
            assert!(e.message.contains("no CUDA GPU"), "{e}");
        }
    }
}
