//! The speed and memory switches (`--tune NAME=on|off`), spelled once.
//!
//! One table ([`switches!`] below) gives each switch its field, its
//! `--tune` name, its default, its value under `all=on` and its
//! documentation; the struct, the name list, the `--tune` help text, the
//! parsing and the recorded form (`describe`, which run metadata and
//! `state.json` keep) all derive from it. Who applies what: the model-level
//! switches become [`crate::models::ModelOptions`] when the models are
//! built, the guide reads its own ([`Tuning`] passed to it), and the
//! device-level ones (cuDNN, the upload mode) are set by the render's and
//! the benchmark's device set-up.

use crate::{Error, Result};

/// Declares [`Tuning`] and everything derived from its table: one row per
/// switch, `field, "name", default, under all=on`, after its documentation.
macro_rules! switches {
    ($( $(#[doc = $doc:literal])* $field:ident, $name:literal, $default:literal, $all:literal; )*) => {
        /// The speed and memory switches of the step on CUDA. Each is a
        /// change made for speed or memory alone (the losses stay those of
        /// the fp32 path within bf16 rounding), and each can be turned off
        /// on its own so that `zoetrope bench --tune NAME=off` measures what
        /// it brings (BENCHMARKS.md records the prediction made before each
        /// change and the outcome).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Tuning {
            $( $(#[doc = $doc])* pub $field: bool, )*
        }

        impl Default for Tuning {
            fn default() -> Self {
                Tuning { $( $field: $default, )* }
            }
        }

        impl Tuning {
            /// The switch names `--tune` takes.
            pub const NAMES: [&'static str; [$($name),*].len()] = [$($name),*];

            /// Every switch off: the plain path, for measuring what the
            /// switches bring.
            pub fn plain() -> Tuning {
                Tuning { $( $field: false, )* }
            }

            /// What `all=on` sets: the defaults with channels-last on.
            fn all_on() -> Tuning {
                Tuning { $( $field: $all, )* }
            }

            /// The field of the switch called `name` (as
            /// [`NAMES`](Self::NAMES) spells it).
            fn switch_mut(&mut self, name: &str) -> Option<&mut bool> {
                match name {
                    $( $name => Some(&mut self.$field), )*
                    _ => None,
                }
            }

            /// Every switch with its name, in the table's order.
            fn values(&self) -> [(&'static str, bool); [$($name),*].len()] {
                [$( ($name, self.$field), )*]
            }
        }
    };
}

switches! {
    /// cuDNN times its convolution algorithms once per shape and keeps the
    /// fastest. Off by default: its choice can differ between runs, which
    /// would make seeded CUDA renders differ in the last bits, and with CUDA
    /// graphs it gained under 1 % (BENCHMARKS.md).
    cudnn_benchmark, "cudnn-benchmark", false, false;
    /// Cutouts are resampled in the perceptors' compute kind (bf16 matrix
    /// products) instead of float32, which cuBLAS runs without tensor cores.
    low_precision_cutouts, "low-precision-cutouts", true, true;
    /// The few host-made tensors of a step (crop bins, CLIP's normalisation
    /// constants) go to the GPU through pinned memory without waiting, so the
    /// host never stalls the GPU's queue inside a step.
    async_uploads, "async-uploads", true, true;
    /// Convolution weights in channels-last layout (NHWC), the layout the
    /// tensor cores' convolution kernels read.
    channels_last, "channels-last", false, true;
    /// The device half of the step captured once as a CUDA graph and replayed
    /// (one launch per step instead of about a thousand).
    cuda_graphs, "cuda-graphs", true, true;
    /// The VQGAN decoder's `GroupNorm → SiLU → conv` chains and up-sampling
    /// convolutions keep only what the latent's gradient needs
    /// ([`crate::models::lean`]): one activation map instead of three.
    /// Applies on the CPU too.
    lean_activations, "lean-activations", true, true;
    /// QuickGELU's two scalings by 1.702 folded into the ViT's MLP weights
    /// ([`crate::models::clip::Clip::fold_quick_gelu`]): four elementwise
    /// passes over the widest activations fewer per block and step. Made
    /// when the guide takes its switches; once made it stays.
    fold_quick_gelu, "fold-quick-gelu", true, true;
    /// The ViT perceptors' residual blocks keep only their inputs for the
    /// backward pass and run forward a second time during it
    /// ([`crate::models::clip::Clip::encode_image_checkpointed`]): about a
    /// tenth of their activation memory, for one more forward pass through
    /// the blocks. Off by default (it costs time); for large perceptors
    /// (ViT-L/14) or many cutouts on a small GPU.
    checkpoint_perceptors, "checkpoint-perceptors", false, false;
    /// Seeded GPU renders repeat bit for bit: every model's attention takes
    /// the explicit `softmax(q kᵀ / √d) v` form instead of libtorch's fused
    /// kernels, whose backward sums with atomic additions
    /// ([`crate::models::attention`]), and cuDNN takes deterministic
    /// algorithms only. Off by default: on an H100 seeded renders did not
    /// repeat without it (BENCHMARKS.md, run 6), and what it costs there is
    /// not measured yet. The CPU repeats either way.
    deterministic, "deterministic", false, false;
}

impl Tuning {
    /// Switches earlier builds had, with why each went: `--tune` says so
    /// when given one, and a run that recorded one resumes without it.
    pub const REMOVED: [(&'static str, &'static str); 1] = [(
        "reduced-group-norm",
        "it measured slower than libtorch's group norm on the H100 (BENCHMARKS.md, run 5)",
    )];

    /// The help text of `bench --tune`, listing every switch (as clap
    /// showed the doc comment it replaces: no final period).
    pub fn help() -> String {
        format!(
            "Turn one speed or memory switch on or off, to measure what it brings: {} \
             (or all), as NAME=on|off; repeatable. Default: the render's settings",
            Self::NAMES.join(", ")
        )
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
        let canonical = Self::canonical(name);
        if canonical == "all" {
            *self = if on {
                Tuning::all_on()
            } else {
                Tuning::plain()
            };
            return Ok(());
        }
        match self.switch_mut(&canonical) {
            Some(field) => *field = on,
            None => {
                let removed = Self::REMOVED
                    .iter()
                    .find(|(name, _)| *name == canonical)
                    .map(|(_, why)| format!(" (it was removed: {why})"))
                    .unwrap_or_default();
                return Err(Error::input(format!(
                    "--tune {spec}: no switch \"{canonical}\"{removed}; the switches are {} (or all)",
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

    /// `name=on|off` for every switch, for reports (and the recorded form in
    /// run metadata and `state.json`).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .values()
            .iter()
            .map(|(name, on)| format!("{name}={}", if *on { "on" } else { "off" }))
            .collect();
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `all=on` is the defaults with channels-last on (what it was before
    /// the table).
    #[test]
    fn all_on_is_the_defaults_with_channels_last() {
        let mut t = Tuning::plain();
        t.set("all=on").unwrap();
        assert_eq!(
            t,
            Tuning {
                channels_last: true,
                ..Tuning::default()
            }
        );
        assert!(Tuning::help().contains("deterministic (or all), as NAME=on|off"));
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
}
