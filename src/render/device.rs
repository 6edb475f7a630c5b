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

/// The speed and memory switches of the step on CUDA. Each is a change made
/// for speed or memory alone (the losses stay those of the fp32 path within
/// bf16 rounding), and
/// each can be turned off on its own so that `zoetrope bench --tune NAME=off`
/// measures what it brings (BENCHMARKS.md records the prediction made before
/// each change and the outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// cuDNN times its convolution algorithms once per shape and keeps the
    /// fastest. Off by default: its choice can differ between runs, which
    /// would make seeded CUDA renders differ in the last bits, and with CUDA
    /// graphs it gained under 1 % (BENCHMARKS.md).
    pub cudnn_benchmark: bool,
    /// Cutouts are resampled in the perceptors' compute kind (bf16 matrix
    /// products) instead of float32, which cuBLAS runs without tensor cores.
    pub low_precision_cutouts: bool,
    /// The few host-made tensors of a step (crop bins, CLIP's normalisation
    /// constants) go to the GPU through pinned memory without waiting, so the
    /// host never stalls the GPU's queue inside a step.
    pub async_uploads: bool,
    /// Convolution weights in channels-last layout (NHWC), the layout the
    /// tensor cores' convolution kernels read.
    pub channels_last: bool,
    /// The device half of the step captured once as a CUDA graph and replayed
    /// (one launch per step instead of about a thousand).
    pub cuda_graphs: bool,
    /// The VQGAN decoder's `GroupNorm → SiLU → conv` chains and up-sampling
    /// convolutions keep only what the latent's gradient needs
    /// ([`crate::models::lean`]): one activation map instead of three.
    /// Applies on the CPU too.
    pub lean_activations: bool,
    /// QuickGELU's two scalings by 1.702 folded into the ViT's MLP weights
    /// ([`crate::models::clip::Clip::fold_quick_gelu`]): four elementwise
    /// passes over the widest activations fewer per block and step. Made
    /// when the guide takes its switches; once made it stays.
    pub fold_quick_gelu: bool,
    /// The ViT perceptors' residual blocks keep only their inputs for the
    /// backward pass and run forward a second time during it
    /// ([`crate::models::clip::Clip::encode_image_checkpointed`]): about a
    /// tenth of their activation memory, for one more forward pass through
    /// the blocks. Off by default (it costs time); for large perceptors
    /// (ViT-L/14) or many cutouts on a small GPU.
    pub checkpoint_perceptors: bool,
    /// Seeded GPU renders repeat bit for bit: every model's attention takes
    /// the explicit `softmax(q kᵀ / √d) v` form instead of libtorch's fused
    /// kernels, whose backward sums with atomic additions
    /// ([`crate::models::attention`]), and cuDNN takes deterministic
    /// algorithms only. Off by default: on an H100 seeded renders did not
    /// repeat without it (BENCHMARKS.md, run 6), and what it costs there is
    /// not measured yet. The CPU repeats either way.
    pub deterministic: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            cudnn_benchmark: false,
            low_precision_cutouts: true,
            async_uploads: true,
            channels_last: false,
            cuda_graphs: true,
            lean_activations: true,
            fold_quick_gelu: true,
            checkpoint_perceptors: false,
            deterministic: false,
        }
    }
}

impl Tuning {
    /// The switch names `--tune` takes.
    pub const NAMES: [&'static str; 9] = [
        "cudnn-benchmark",
        "low-precision-cutouts",
        "async-uploads",
        "channels-last",
        "cuda-graphs",
        "lean-activations",
        "fold-quick-gelu",
        "checkpoint-perceptors",
        "deterministic",
    ];

    /// Every switch off: the plain path, for measuring what the switches bring.
    pub fn plain() -> Tuning {
        Tuning {
            cudnn_benchmark: false,
            low_precision_cutouts: false,
            async_uploads: false,
            channels_last: false,
            cuda_graphs: false,
            lean_activations: false,
            fold_quick_gelu: false,
            checkpoint_perceptors: false,
            deterministic: false,
        }
    }

    /// Applies one `NAME=on|off` (or `all=on|off`); the error lists the names.
    pub fn set(&mut self, spec: &str) -> Result<()> {
        let (name, value) = spec.split_once('=').unwrap_or((spec, "on"));
        let on = match value.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => {
                return Err(Error::input(format!(
                    "--tune {spec}: \"{other}\" is not on or off"
                )))
            }
        };
        match Self::canonical(name).as_str() {
            "cudnn-benchmark" => self.cudnn_benchmark = on,
            "low-precision-cutouts" => self.low_precision_cutouts = on,
            "async-uploads" => self.async_uploads = on,
            "channels-last" => self.channels_last = on,
            "cuda-graphs" => self.cuda_graphs = on,
            "lean-activations" => self.lean_activations = on,
            "fold-quick-gelu" => self.fold_quick_gelu = on,
            "checkpoint-perceptors" => self.checkpoint_perceptors = on,
            "deterministic" => self.deterministic = on,
            "all" => {
                *self = if on {
                    Tuning {
                        channels_last: true,
                        ..Tuning::default()
                    }
                } else {
                    Tuning::plain()
                }
            }
            other => {
                let removed = Self::REMOVED
                    .iter()
                    .find(|(name, _)| *name == other)
                    .map(|(_, why)| format!(" (it was removed: {why})"))
                    .unwrap_or_default();
                return Err(Error::input(format!(
                    "--tune {spec}: no switch \"{other}\"{removed}; the switches are {} (or all)",
                    Self::NAMES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// A switch name as [`NAMES`](Self::NAMES) spells it (`Channels_Last`
    /// → `channels-last`).
    fn canonical(name: &str) -> String {
        name.trim().to_ascii_lowercase().replace('_', "-")
    }

    /// Switches earlier builds had, with why each went: `--tune` says so
    /// when given one, and a run that recorded one resumes without it.
    pub const REMOVED: [(&'static str, &'static str); 1] = [(
        "reduced-group-norm",
        "it measured slower than libtorch's group norm on the H100 (BENCHMARKS.md, run 5)",
    )];

    /// The defaults with each `NAME=on|off` of `specs` applied in order (the
    /// `--tune` arguments of `bench` and `render`).
    pub fn from_specs<S: AsRef<str>>(specs: impl IntoIterator<Item = S>) -> Result<Tuning> {
        let mut tuning = Tuning::default();
        for spec in specs {
            tuning.set(spec.as_ref())?;
        }
        Ok(tuning)
    }

    /// The switches a run recorded (a [`describe`](Self::describe) string in
    /// `state.json`), for resuming it. Names this build does not have (a
    /// switch removed since, or one from a newer build) are left out and
    /// returned for a warning: a switch changes speed and memory only, so
    /// the run goes on with the same losses without it. A known name with a
    /// value that is not on or off is still an error.
    pub fn from_recorded(recorded: &str) -> Result<(Tuning, Vec<String>)> {
        let mut tuning = Tuning::default();
        let mut unknown = Vec::new();
        for spec in recorded.split_whitespace() {
            let name = spec.split_once('=').map_or(spec, |(name, _)| name);
            let canonical = Self::canonical(name);
            if Self::NAMES.contains(&canonical.as_str()) || canonical == "all" {
                tuning.set(spec)?;
            } else {
                unknown.push(name.to_string());
            }
        }
        Ok((tuning, unknown))
    }

    /// `name=on|off` for every switch, for reports.
    pub fn describe(&self) -> String {
        let v = |b: bool| if b { "on" } else { "off" };
        format!(
            "cudnn-benchmark={} low-precision-cutouts={} async-uploads={} channels-last={} cuda-graphs={} lean-activations={} fold-quick-gelu={} checkpoint-perceptors={} deterministic={}",
            v(self.cudnn_benchmark),
            v(self.low_precision_cutouts),
            v(self.async_uploads),
            v(self.channels_last),
            v(self.cuda_graphs),
            v(self.lean_activations),
            v(self.fold_quick_gelu),
            v(self.checkpoint_perceptors),
            v(self.deterministic)
        )
    }

    /// Sets the process-wide parts (cuDNN's autotuner and deterministic mode,
    /// the upload mode, the lean activations, the attention
    /// form) for `device`. The CPU ignores all but the lean activations and
    /// the attention form.
    pub fn apply_global(&self, device: Device) {
        crate::models::lean::set_enabled(self.lean_activations);
        crate::models::attention::set_deterministic(self.deterministic);
        crate::gpu::set_async_uploads(self.async_uploads);
        if device.is_cuda() {
            // The autotuner's choice can differ between runs, deterministic
            // algorithms or not, so deterministic runs go without it.
            tch::Cuda::cudnn_set_benchmark(self.cudnn_benchmark && !self.deterministic);
            if !crate::gpu::set_cudnn_deterministic(self.deterministic) && self.deterministic {
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
    fn tuning_switches_parse_and_name_themselves() {
        let mut t = Tuning::from_specs::<&str>([]).unwrap();
        assert_eq!(t, Tuning::default());
        assert!(!t.cudnn_benchmark && t.cuda_graphs && t.async_uploads && t.lean_activations);
        t.set("cudnn-benchmark=on").unwrap();
        t.set("cudnn-benchmark=off").unwrap();
        t.set("channels_last").unwrap();
        assert!(!t.cudnn_benchmark && t.channels_last && t.low_precision_cutouts);
        assert_eq!(
            t.describe(),
            "cudnn-benchmark=off low-precision-cutouts=on async-uploads=on channels-last=on cuda-graphs=on lean-activations=on fold-quick-gelu=on checkpoint-perceptors=off deterministic=off"
        );
        t.set("deterministic=on").unwrap();
        assert!(t.deterministic);
        t.set("lean-activations=off").unwrap();
        assert!(!t.lean_activations);
        t.set("all=off").unwrap();
        assert_eq!(t, Tuning::plain());
        let e = t.set("fast=on").unwrap_err();
        assert!(
            e.message.contains("cudnn-benchmark, low-precision-cutouts"),
            "{e}"
        );
        assert!(t.set("async-uploads=maybe").is_err());
        // A removed switch: --tune says it was removed and why.
        let e = t.set("reduced-group-norm=on").unwrap_err();
        assert!(
            e.message.contains("was removed") && e.message.contains("run 5"),
            "{e}"
        );
    }

    /// A run's recorded switches resume it: every known switch as recorded,
    /// unknown names (a removed switch) left out and named, a bad value
    /// still an error.
    #[test]
    fn recorded_switches_skip_unknown_names() {
        let mut recorded = Tuning::plain();
        recorded.deterministic = true;
        let (t, unknown) = Tuning::from_recorded(&recorded.describe()).unwrap();
        assert_eq!(t, recorded);
        assert!(unknown.is_empty());
        // What commit 8e8fd69 wrote (with reduced-group-norm, since removed),
        // plus a name no build has had.
        let old =
            "cudnn-benchmark=off low-precision-cutouts=on async-uploads=on channels-last=off \
                   cuda-graphs=off reduced-group-norm=on lean-activations=on fold-quick-gelu=on \
                   checkpoint-perceptors=on deterministic=off turbo=on";
        let (t, unknown) = Tuning::from_recorded(old).unwrap();
        assert_eq!(unknown, ["reduced-group-norm", "turbo"]);
        assert!(!t.cuda_graphs && t.checkpoint_perceptors && t.lean_activations);
        assert_eq!(
            t,
            Tuning {
                cuda_graphs: false,
                checkpoint_perceptors: true,
                ..Tuning::default()
            }
        );
        let e = Tuning::from_recorded("cuda-graphs=maybe").unwrap_err();
        assert!(e.message.contains("maybe"), "{e}");
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
