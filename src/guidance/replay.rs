//! CUDA-graph replay of a [`Guide`]'s step: after [`GRAPH_WARMUP_STEPS`]
//! eager steps the device half (`Guide::device_step`) is captured once and
//! replayed from then on (one launch instead of about a thousand, the same
//! kernels and the same random numbers), and captured anew when what it
//! reads changes ([`GraphKey`]). A capture that fails leaves the guide
//! running without graphs.

use tch::Tensor;

use crate::guidance::adam::Adam;
use crate::guidance::guide::{Guide, StepWeights};
use crate::guidance::image::ImageState;
use crate::guidance::step::{optional_losses, StepInputs, TARGET_LOSSES};
use crate::rng::Rng;
use crate::{Error, Result};

/// Eager steps before a step is captured as a CUDA graph: the first one
/// allocates the gradient and lets cuDNN time its algorithms (when autotuning
/// is on; timing cannot happen during a capture), the second runs as the
/// graph will.
const GRAPH_WARMUP_STEPS: usize = 2;

impl Guide {
    /// A step with the device half replayed from a CUDA graph (module docs).
    pub(super) fn step_graphed(
        &self,
        state: &mut ImageState,
        adam: &mut Adam,
        w: &StepWeights<'_>,
        inputs: &StepInputs,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let key = GraphKey::of(state, adam, w);
        let mut run = self.graph.borrow_mut();
        if run.failed {
            drop(run);
            return self.device_step(state, adam, w, inputs, rng, &mut None);
        }
        if run.key.as_ref() != Some(&key) {
            *run = GraphRun {
                key: Some(key),
                ..GraphRun::default()
            };
        }
        if let (Some(graph), Some(statics), Some(loss)) = (&run.graph, &run.statics, &run.loss) {
            statics.load(inputs)?;
            graph.replay()?;
            return crate::ops::copy(&loss.f_detach()?);
        }
        if run.eager_steps < GRAPH_WARMUP_STEPS {
            run.eager_steps += 1;
            drop(run);
            return self.device_step(state, adam, w, inputs, rng, &mut None);
        }
        let device = state.device();
        let statics = inputs.copy()?;
        // The eager steps' cached blocks go back first, so that the graph's
        // own pool does not come on top of them.
        crate::gpu::empty_cache(device);
        let captured = crate::gpu::CudaGraph::capture(device, || {
            self.device_step(state, adam, w, &statics, rng, &mut None)
        });
        match captured {
            Ok((graph, loss)) => {
                graph.replay()?;
                let out = crate::ops::copy(&loss.f_detach()?)?;
                run.graph = Some(graph);
                run.statics = Some(statics);
                run.loss = Some(loss);
                crate::gpu::empty_cache(device);
                Ok(out)
            }
            Err(e) => {
                eprintln!(
                    "note: the step could not be captured as a CUDA graph ({e}); continuing without graphs"
                );
                run.failed = true;
                drop(run);
                self.device_step(state, adam, w, inputs, rng, &mut None)
            }
        }
    }
}

impl StepInputs {
    /// Device copies that a CUDA graph can read from for as long as it lives.
    fn copy(&self) -> Result<StepInputs> {
        Ok(StepInputs {
            bins: self
                .bins
                .iter()
                .map(crate::ops::copy)
                .collect::<Result<_>>()?,
            augments: self.augments.clone(),
            packed: crate::ops::copy(&self.packed)?,
            masks: self.masks.as_ref().map(crate::ops::copy).transpose()?,
            located: self
                .located
                .iter()
                .map(crate::ops::copy)
                .collect::<Result<_>>()?,
        })
    }

    /// Writes `other`'s values into these tensors (same shapes).
    fn load(&self, other: &StepInputs) -> Result<()> {
        if self.bins.len() != other.bins.len() || self.located.len() != other.located.len() {
            return Err(Error::internal(
                "cutout bins for another number of perceptors",
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for (s, o) in self.bins.iter().zip(&other.bins) {
                s.shallow_clone().f_copy_(o)?;
            }
            for (s, o) in self.located.iter().zip(&other.located) {
                s.shallow_clone().f_copy_(o)?;
            }
            self.packed.shallow_clone().f_copy_(&other.packed)?;
            match (&self.masks, &other.masks) {
                (Some(s), Some(o)) => {
                    s.shallow_clone().f_copy_(o)?;
                }
                (None, None) => {}
                _ => {
                    return Err(Error::internal(
                        "prompt masks in one step's inputs but not in the captured step's",
                    ))
                }
            }
            Ok(())
        })
    }
}

/// What a captured step reads besides its inputs: if any of it changes,
/// the graph would read stale or freed memory, so the step is captured anew.
#[derive(Debug, PartialEq, Eq)]
struct GraphKey {
    param: usize,
    adam: [usize; 2],
    targets: [Option<(usize, usize)>; TARGET_LOSSES],
    /// Whether the smoothing loss is in the step.
    smoothing: bool,
    /// How many direct image prompts weigh in.
    direct_images: usize,
    param_shape: Vec<i64>,
}

impl GraphKey {
    fn of(state: &ImageState, adam: &Adam, w: &StepWeights<'_>) -> GraphKey {
        let ptr = |t: &Tensor| t.data_ptr() as usize;
        let [(_, m), (_, v)] = adam.tensors();
        let targets = optional_losses(w).map(|(_, t)| {
            t.map(|(_, target)| (ptr(&target.rgb), target.z_q.as_ref().map_or(0, ptr)))
        });
        GraphKey {
            param: ptr(state.param()),
            adam: [ptr(m), ptr(v)],
            targets,
            smoothing: w.smoothing.is_some(),
            direct_images: w.direct_images.len(),
            param_shape: state.param().size(),
        }
    }
}

/// The captured step of a [`Guide`] and what it was captured for.
#[derive(Debug, Default)]
pub(crate) struct GraphRun {
    key: Option<GraphKey>,
    eager_steps: usize,
    graph: Option<crate::gpu::CudaGraph>,
    statics: Option<StepInputs>,
    loss: Option<Tensor>,
    /// Capture failed once: this guide runs without graphs from then on.
    failed: bool,
}
