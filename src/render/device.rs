//! Choosing the torch device and the compute precision from the scene's
//! `device` and `precision` settings.

use crate::tuning::Tuning;
use crate::{Error, Result};
use tch::{Device, Kind};

/// Resolves `device` (`auto`, `cpu`, `cuda`, `cuda:N`) to a torch device.
///
/// `auto` picks the first GPU when libtorch sees one, else the CPU. Asking for
/// CUDA on a machine without it is an error that says so, rather than a silent
/// CPU run that would take hours.
pub fn resolve_device(setting: &str) -> Result<Device> {
    resolve_device_as(setting, DeviceOrigin::Setting)
}

/// [`resolve_device`] for a command-line `--device` value: the messages name
/// the flag and its spellings instead of the scene setting.
pub fn resolve_device_flag(value: &str) -> Result<Device> {
    resolve_device_as(value, DeviceOrigin::Flag)
}

/// Where a device name came from, which its messages name.
#[derive(Clone, Copy)]
enum DeviceOrigin {
    Setting,
    Flag,
}

fn resolve_device_as(setting: &str, origin: DeviceOrigin) -> Result<Device> {
    let s = setting.trim().to_ascii_lowercase();
    let cuda_count = tch::Cuda::device_count() as usize;
    let (what, cpu, choices) = match origin {
        DeviceOrigin::Setting => (
            format!("setting `device = \"{setting}\"`"),
            "`device = \"cpu\"` or \"auto\"",
            "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"",
        ),
        DeviceOrigin::Flag => (
            format!("--device {setting}"),
            "`--device cpu` or `--device auto`",
            "auto, cpu, cuda or cuda:N",
        ),
    };
    let need_cuda = |i: usize| -> Result<Device> {
        if i < cuda_count {
            Ok(Device::Cuda(i))
        } else if cuda_count == 0 {
            Err(Error::input(format!(
                "{what}: no CUDA GPU is visible to libtorch on this machine; use {cpu}"
            )))
        } else {
            Err(Error::input(format!(
                "{what}: this machine has {cuda_count} CUDA device(s), numbered 0..{}",
                cuda_count - 1
            )))
        }
    };
    match s.as_str() {
        "auto" => Ok(if cuda_count > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => need_cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => need_cuda(i),
            _ => Err(Error::input(format!("{what}: expected {choices}"))),
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

/// Sets the device-level switches of `tuning` (cuDNN's autotuner and
/// deterministic mode, the upload mode) for `device`; the CPU ignores them.
/// The model-level ones go to the models as [`crate::models::ModelOptions`]
/// when they are built, and the guide reads its own.
pub fn apply_device_switches(tuning: &Tuning, device: Device) {
    crate::gpu::set_async_uploads(tuning.async_uploads);
    if device.is_cuda() {
        // The autotuner's choice can differ between runs, deterministic
        // algorithms or not, so deterministic runs go without it.
        tch::Cuda::cudnn_set_benchmark(tuning.cudnn_benchmark && !tuning.deterministic);
        if !crate::gpu::set_cudnn_deterministic(tuning.deterministic) && tuning.deterministic {
            // Once per process: a grid applies the switches once per cell.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                    eprintln!(
                    "warning: --tune deterministic: this build cannot put cuDNN in its deterministic \
                     mode (it lacks the C++ shim: see README, Development); attention is \
                     deterministic, convolutions may still differ between runs"
                    )
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

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
    fn channels_last_keeps_values_and_changes_strides() {
        // No random initialisation: other tests seed torch's global generator
        // concurrently.
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let before = Tensor::arange(216, (Kind::Float, Device::Cpu)).view([6, 4, 3, 3]);
        let ws = vs.root().var_copy("weight", &before);
        crate::gpu::make_channels_last(&vs).unwrap();
        // [6, 4, 3, 3] in NHWC order: the channel stride is 1.
        assert_eq!(ws.stride(), vec![36, 1, 12, 4]);
        assert!(ws.equal(&before));
        let up = crate::gpu::upload(&before, Device::Cpu).unwrap();
        assert!(up.equal(&before));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = resolve_device_flag("gpu").unwrap_err();
        assert_eq!(
            e.message,
            "--device gpu: expected auto, cpu, cuda or cuda:N"
        );
        assert_eq!(e.exit_code(), 2);
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
