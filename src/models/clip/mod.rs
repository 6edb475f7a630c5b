//! OpenAI CLIP, the perceptor that scores images against prompts.
//!
//! This is the architecture of OpenAI's `clip/model.py` written with tch: the
//! ViT and ModifiedResNet visual towers, the causal text transformer and the BPE
//! [`Tokenizer`]. Variable-store paths are the official state-dict keys
//! (`visual.transformer.resblocks.0.attn.in_proj_weight`, `token_embedding.weight`,
//! `logit_scale`, …), so an official checkpoint converted to safetensors loads as
//! is, and the architecture is read off the tensor shapes exactly as the official
//! `build_model` does ([`ClipConfig::infer`]).
//!
//! Parity with the official code is checked on random weights by
//! `tests/it/clip_parity.rs` against fixtures made by
//! `scripts/reference/gen_clip_fixtures.py`.

#[rustfmt::skip]
mod html_tables;
mod layers;
mod text_clean;
mod tokenizer;
mod vision;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use crate::models::ModelOptions;
use crate::{Error, Result};
use layers::{LayerNorm, Params, Transformer};
use vision::{ModifiedResNet, VisionTransformer};

pub use text_clean::{basic_clean, html_unescape, whitespace_clean};
pub use tokenizer::{Tokenizer, CONTEXT_LENGTH, END_TOKEN, START_TOKEN, VOCAB_SIZE};
pub use vision::VitCheckpoint;

/// The visual tower's architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionConfig {
    /// Vision Transformer (`ViT-*`): `layers` residual attention blocks of
    /// `width` channels over `patch_size`² patches.
    ViT {
        layers: i64,
        width: i64,
        patch_size: i64,
        heads: i64,
    },
    /// ModifiedResNet (`RN*`): Bottleneck blocks per stage, stem width, and the
    /// heads of the attention pool.
    ResNet {
        layers: [i64; 4],
        width: i64,
        heads: i64,
    },
}

/// Hyper-parameters of a CLIP model, named as in `clip.model.CLIP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipConfig {
    /// Dimension of the joint image/text embedding.
    pub embed_dim: i64,
    /// Side of the square input image, in pixels.
    pub image_resolution: i64,
    pub vision: VisionConfig,
    /// Token positions of the text transformer (77 for all released models).
    pub context_length: i64,
    pub vocab_size: i64,
    pub transformer_width: i64,
    pub transformer_heads: i64,
    pub transformer_layers: i64,
}

/// The names of the nine released OpenAI CLIP models, in the order users know
/// them: the scene file's perceptor names.
pub const MODEL_NAMES: [&str; 9] = crate::catalog::PERCEPTORS;

/// State-dict entries that are metadata in OpenAI's archives, not parameters
/// (`build_model` deletes them before loading).
const METADATA_KEYS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

fn text_defaults(embed_dim: i64, width: i64, resolution: i64, vision: VisionConfig) -> ClipConfig {
    ClipConfig {
        embed_dim,
        image_resolution: resolution,
        vision,
        context_length: 77,
        vocab_size: 49408,
        transformer_width: width,
        transformer_heads: width / 64,
        transformer_layers: 12,
    }
}

fn resnet(layers: [i64; 4], width: i64) -> VisionConfig {
    VisionConfig::ResNet {
        layers,
        width,
        heads: width * 32 / 64,
    }
}

fn vit(layers: i64, width: i64, patch_size: i64) -> VisionConfig {
    VisionConfig::ViT {
        layers,
        width,
        patch_size,
        heads: width / 64,
    }
}

impl ClipConfig {
    /// RN50: ResNet-50 tower, 224 px, 1024-d embedding.
    pub fn rn50() -> Self {
        text_defaults(1024, 512, 224, resnet([3, 4, 6, 3], 64))
    }
    /// RN101: ResNet-101 tower, 224 px, 512-d embedding.
    pub fn rn101() -> Self {
        text_defaults(512, 512, 224, resnet([3, 4, 23, 3], 64))
    }
    /// RN50x4: 4× compute EfficientNet-style scaled ResNet, 288 px.
    pub fn rn50x4() -> Self {
        text_defaults(640, 640, 288, resnet([4, 6, 10, 6], 80))
    }
    /// RN50x16: 384 px.
    pub fn rn50x16() -> Self {
        text_defaults(768, 768, 384, resnet([6, 8, 18, 8], 96))
    }
    /// RN50x64: 448 px.
    pub fn rn50x64() -> Self {
        text_defaults(1024, 1024, 448, resnet([3, 15, 36, 10], 128))
    }
    /// ViT-B/32: 12 layers of width 768, 32 px patches, 224 px.
    pub fn vit_b32() -> Self {
        text_defaults(512, 512, 224, vit(12, 768, 32))
    }
    /// ViT-B/16: 16 px patches, 224 px.
    pub fn vit_b16() -> Self {
        text_defaults(512, 512, 224, vit(12, 768, 16))
    }
    /// ViT-L/14: 24 layers of width 1024, 14 px patches, 224 px.
    pub fn vit_l14() -> Self {
        text_defaults(768, 768, 224, vit(24, 1024, 14))
    }
    /// ViT-L/14@336px: ViT-L/14 fine-tuned at 336 px.
    pub fn vit_l14_336() -> Self {
        text_defaults(768, 768, 336, vit(24, 1024, 14))
    }

    /// The configuration of a released model by its official name (see
    /// [`MODEL_NAMES`]); an unknown name is an input error listing the known ones.
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "RN50" => Self::rn50(),
            "RN101" => Self::rn101(),
            "RN50x4" => Self::rn50x4(),
            "RN50x16" => Self::rn50x16(),
            "RN50x64" => Self::rn50x64(),
            "ViT-B/32" => Self::vit_b32(),
            "ViT-B/16" => Self::vit_b16(),
            "ViT-L/14" => Self::vit_l14(),
            "ViT-L/14@336px" => Self::vit_l14_336(),
            _ => {
                return Err(Error::input(format!(
                    "unknown CLIP model '{name}'; the known models are {}",
                    MODEL_NAMES.join(", ")
                )))
            }
        })
    }

    /// Reads the architecture off a state dict's tensor shapes, the way
    /// `clip.model.build_model` does: the presence of `visual.proj` means a ViT;
    /// layer counts come from the distinct block indices; heads are width / 64
    /// (text, ViT) or width · 32 / 64 (ResNet attention pool).
    pub fn infer(shapes: &BTreeMap<String, Vec<i64>>) -> Result<ClipConfig> {
        let dim = |key: &str, axis: isize| -> Result<i64> {
            let shape = shapes.get(key).ok_or_else(|| {
                Error::weights(format!(
                    "not an OpenAI CLIP state dict: the tensor '{key}' is missing"
                ))
            })?;
            let index = if axis < 0 {
                shape.len() as isize + axis
            } else {
                axis
            };
            usize::try_from(index)
                .ok()
                .and_then(|i| shape.get(i).copied())
                .ok_or_else(|| {
                    Error::weights(format!(
                        "the CLIP tensor '{key}' has shape {shape:?}, which has no axis {axis}"
                    ))
                })
        };
        // Number of distinct values of the key's third dot-separated field
        // among keys with the prefix (block indices).
        let count = |prefix: &str| -> i64 {
            shapes
                .keys()
                .filter(|k| k.starts_with(prefix))
                .filter_map(|k| k.split('.').nth(2))
                .collect::<BTreeSet<_>>()
                .len() as i64
        };
        let grid = |key: &str| -> Result<i64> {
            let n = dim(key, 0)?;
            let g = ((n - 1) as f64).sqrt().round() as i64;
            if g * g + 1 != n {
                return Err(Error::weights(format!(
                    "the CLIP tensor '{key}' has {n} positions, which is not a square grid plus one"
                )));
            }
            Ok(g)
        };

        let (vision, image_resolution) = if shapes.contains_key("visual.proj") {
            let width = dim("visual.conv1.weight", 0)?;
            let layers = shapes
                .keys()
                .filter(|k| k.starts_with("visual.") && k.ends_with(".attn.in_proj_weight"))
                .count() as i64;
            let patch_size = dim("visual.conv1.weight", -1)?;
            let g = grid("visual.positional_embedding")?;
            (vit(layers, width, patch_size), patch_size * g)
        } else {
            let mut layers = [0; 4];
            for (b, l) in layers.iter_mut().enumerate() {
                *l = count(&format!("visual.layer{}", b + 1));
            }
            let width = dim("visual.layer1.0.conv1.weight", 0)?;
            let g = grid("visual.attnpool.positional_embedding")?;
            (resnet(layers, width), g * 32)
        };
        let transformer_width = dim("ln_final.weight", 0)?;
        let config = ClipConfig {
            embed_dim: dim("text_projection", 1)?,
            image_resolution,
            vision,
            context_length: dim("positional_embedding", 0)?,
            vocab_size: dim("token_embedding.weight", 0)?,
            transformer_width,
            transformer_heads: transformer_width / 64,
            transformer_layers: count("transformer.resblocks"),
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects configurations the architecture cannot be built from (zero heads,
    /// widths that do not split into heads, resolutions that do not tile).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::weights(format!(
                "unusable CLIP architecture: {what}"
            )))
        };
        if self.transformer_heads < 1 || self.transformer_width % self.transformer_heads != 0 {
            return bad(format!(
                "text width {} with {} heads",
                self.transformer_width, self.transformer_heads
            ));
        }
        if self.transformer_layers < 1 || self.context_length < 1 || self.vocab_size < 1 {
            return bad("the text transformer has no layers, positions or vocabulary".into());
        }
        match &self.vision {
            VisionConfig::ViT {
                layers,
                width,
                patch_size,
                heads,
            } => {
                if *heads < 1 || width % heads != 0 || *layers < 1 || *patch_size < 1 {
                    return bad(format!(
                        "ViT width {width}, {heads} heads, {layers} layers, patch {patch_size}"
                    ));
                }
            }
            VisionConfig::ResNet {
                layers,
                width,
                heads,
            } => {
                if *heads < 1 || (width * 32) % heads != 0 || layers.iter().any(|&l| l < 1) {
                    return bad(format!(
                        "ResNet width {width}, {heads} heads, layers {layers:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The official state dict's keys and shapes for this configuration (scalars
    /// have an empty shape), computed by building the model in shape-only mode:
    /// nothing the size of the weights is allocated, so this is cheap even for
    /// RN50x64.
    pub fn state_dict_shapes(&self) -> Result<BTreeMap<String, Vec<i64>>> {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = Params {
            path: vs.root(),
            shape_only: true,
            options: ModelOptions::default(),
        };
        let _model = ClipModules::new(&p, self)?;
        Ok(vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect())
    }
}

#[derive(Debug)]
enum Visual {
    ViT(VisionTransformer),
    ResNet(ModifiedResNet),
}

#[derive(Debug)]
struct ClipModules {
    visual: Visual,
    transformer: Transformer,
    token_embedding: Tensor,
    positional_embedding: Tensor,
    ln_final: LayerNorm,
    text_projection: Tensor,
    logit_scale: Tensor,
}

impl ClipModules {
    fn new(p: &Params, c: &ClipConfig) -> Result<ClipModules> {
        let v = p.sub("visual");
        let visual = match &c.vision {
            VisionConfig::ViT {
                layers,
                width,
                patch_size,
                heads,
            } => Visual::ViT(VisionTransformer::new(
                &v,
                c.image_resolution,
                *patch_size,
                *width,
                *layers,
                *heads,
                c.embed_dim,
            )?),
            VisionConfig::ResNet {
                layers,
                width,
                heads,
            } => Visual::ResNet(ModifiedResNet::new(
                &v,
                *layers,
                c.embed_dim,
                *heads,
                c.image_resolution,
                *width,
            )?),
        };
        let w = c.transformer_width;
        Ok(ClipModules {
            visual,
            transformer: Transformer::new(
                &p.sub("transformer"),
                w,
                c.transformer_layers,
                c.transformer_heads,
            )?,
            token_embedding: p.float("token_embedding.weight", &[c.vocab_size, w])?,
            positional_embedding: p.float("positional_embedding", &[c.context_length, w])?,
            ln_final: LayerNorm::new(&p.sub("ln_final"), w)?,
            text_projection: p.float("text_projection", &[w, c.embed_dim])?,
            logit_scale: p.float("logit_scale", &[])?,
        })
    }
}

/// A CLIP model: image and text encoders into one embedding space.
///
/// Made either over a caller's variable store ([`Clip::new`]) or from a
/// safetensors file ([`Clip::load`]), in which case it owns its store and can
/// change precision with [`Clip::set_kind`].
pub struct Clip {
    config: ClipConfig,
    m: ClipModules,
    vs: Option<nn::VarStore>,
    /// Set by [`Clip::release_text_tower`].
    text_released: bool,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Reads the dtype of a safetensors entry as a tch kind.
fn kind_of(dtype: safetensors::Dtype) -> Option<Kind> {
    use safetensors::Dtype as D;
    Some(match dtype {
        D::F32 => Kind::Float,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::F64 => Kind::Double,
        D::I64 => Kind::Int64,
        D::I32 => Kind::Int,
        D::I16 => Kind::Int16,
        D::I8 => Kind::Int8,
        D::U8 => Kind::Uint8,
        D::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl Clip {
    /// Registers a CLIP model's parameters (zero-initialised, not trainable) under
    /// `vs` with the official key names; fill them with `VarStore::load` or
    /// [`Clip::load`]. Memory libtorch cannot allocate for them is an error.
    pub fn new(vs: &nn::Path, config: &ClipConfig) -> Result<Clip> {
        Self::new_with(vs, config, ModelOptions::default())
    }

    /// [`Clip::new`] with the model-level switches `options`.
    pub fn new_with(vs: &nn::Path, config: &ClipConfig, options: ModelOptions) -> Result<Clip> {
        let p = Params {
            path: vs.clone(),
            shape_only: false,
            options,
        };
        Ok(Clip {
            config: config.clone(),
            m: ClipModules::new(&p, config)?,
            vs: None,
            text_released: false,
        })
    }

    /// Loads an official CLIP state dict saved as safetensors (any float dtype;
    /// values are converted to fp32), inferring the architecture from the shapes.
    pub fn load(path: &Path, device: Device) -> Result<Clip> {
        Self::load_as(path, device, Kind::Float)
    }

    /// [`Clip::load`] straight into `kind` (`Float`, `BFloat16` or `Half`).
    pub fn load_as(path: &Path, device: Device, kind: Kind) -> Result<Clip> {
        Self::load_with(path, device, kind, ModelOptions::default())
    }

    /// [`Clip::load_as`] with the model-level switches `options`.
    pub fn load_with(
        path: &Path,
        device: Device,
        kind: Kind,
        options: ModelOptions,
    ) -> Result<Clip> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::weights(format!(
                "cannot read the CLIP weights file {shown}: {e}; check the path or fetch the weights"
            ))
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::weights(format!(
                "{shown} is not a readable safetensors file ({e}); convert the CLIP checkpoint again"
            ))
        })?;
        let shapes: BTreeMap<String, Vec<i64>> = st
            .tensors()
            .into_iter()
            .filter(|(k, _)| !METADATA_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k, v.shape().iter().map(|&d| d as i64).collect()))
            .collect();
        let config = ClipConfig::infer(&shapes).map_err(|e| e.context(format!("{shown}")))?;

        let mut vs = nn::VarStore::new(device);
        match kind {
            Kind::Float | Kind::BFloat16 | Kind::Half => vs.set_kind(kind),
            other => {
                return Err(Error::internal(format!(
                    "CLIP cannot run in {other:?}; use Float, BFloat16 or Half"
                )))
            }
        }
        let model = Clip::new_with(&vs.root(), &config, options)
            .map_err(|e| e.context(format!("building the CLIP model of {shown}")))?;
        let vars = vs.variables();

        let unexpected: Vec<&String> = shapes.keys().filter(|k| !vars.contains_key(*k)).collect();
        if !unexpected.is_empty() {
            return Err(Error::weights(format!(
                "{shown} has {} tensor(s) an OpenAI CLIP model does not, e.g. {}; \
                 it is not an OpenAI CLIP checkpoint under the official key names",
                unexpected.len(),
                list_some(unexpected.iter().map(|s| s.as_str()))
            )));
        }
        let missing: Vec<&String> = vars
            .keys()
            .filter(|k| !shapes.contains_key(*k) && !k.ends_with("num_batches_tracked"))
            .collect();
        if !missing.is_empty() {
            return Err(Error::weights(format!(
                "{shown} lacks {} CLIP tensor(s), e.g. {}; the file is incomplete or not a CLIP checkpoint",
                missing.len(),
                list_some(missing.iter().map(|s| s.as_str()))
            )));
        }
        tch::no_grad(|| -> Result<()> {
            for (name, var) in vars.iter() {
                let Ok(view) = st.tensor(name) else { continue };
                let file_shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if file_shape != var.size() {
                    return Err(Error::weights(format!(
                        "{shown}: tensor '{name}' has shape {file_shape:?}, the model expects {:?}",
                        var.size()
                    )));
                }
                let file_kind = kind_of(view.dtype()).ok_or_else(|| {
                    Error::weights(format!(
                        "{shown}: tensor '{name}' has unsupported dtype {:?}",
                        view.dtype()
                    ))
                })?;
                let src = Tensor::f_from_data_size(view.data(), &file_shape, file_kind)?;
                let mut var = var.shallow_clone();
                var.f_copy_(&src)?;
            }
            Ok(())
        })?;
        Ok(Clip {
            vs: Some(vs),
            text_released: false,
            ..model
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Side of the square images the visual tower takes (224, 288, 336, …).
    pub fn input_resolution(&self) -> i64 {
        self.config.image_resolution
    }

    /// Dimension of the joint embedding.
    pub fn embed_dim(&self) -> i64 {
        self.config.embed_dim
    }

    /// Token positions the text tower takes (77 for released models).
    pub fn context_length(&self) -> i64 {
        self.config.context_length
    }

    /// The dtype the model computes in (that of its weights).
    pub fn kind(&self) -> Kind {
        self.m.token_embedding.kind()
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.m.token_embedding.device()
    }

    /// The learned temperature, `exp(logit_scale)` is the logit multiplier.
    pub fn logit_scale(&self) -> &Tensor {
        &self.m.logit_scale
    }

    /// The variable store the model owns (set when made by [`Clip::load`]).
    pub fn var_store(&self) -> Option<&nn::VarStore> {
        self.vs.as_ref()
    }

    /// Converts the floating-point weights to `kind` (Float, BFloat16, Half);
    /// BatchNorm's integer counters are left alone. Only a model that owns its
    /// store (from [`Clip::load`]) can be converted here; for [`Clip::new`] convert
    /// the caller's `VarStore` instead. A conversion libtorch cannot make
    /// (no memory for a converted copy) is an error that may leave some
    /// weights converted; calling `set_kind` again converts the rest.
    pub fn set_kind(&mut self, kind: Kind) -> Result<()> {
        let vs = self.vs.as_ref().ok_or_else(|| {
            Error::internal(
                "this CLIP model was built over an outside VarStore; convert that store",
            )
        })?;
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half) {
            return Err(Error::internal(format!(
                "CLIP cannot run in {kind:?}; use Float, BFloat16 or Half"
            )));
        }
        // What `VarStore::float()` (`bfloat16()`, `half()`) does, with
        // libtorch's errors returned: every floating-point variable's data
        // becomes its conversion to `kind`.
        for (_, var) in vs.variables() {
            if var.is_floating_point() {
                let converted = var.f_to_kind(kind)?;
                var.shallow_clone().f_set_data(&converted)?;
            }
        }
        Ok(())
    }

    /// Rewrites the convolution kernels in channels-last layout
    /// ([`crate::gpu::make_channels_last`]); a no-op for a model whose
    /// variables belong to a caller's store.
    pub fn make_channels_last(&self) -> Result<()> {
        match &self.vs {
            Some(vs) => crate::gpu::make_channels_last(vs),
            None => Ok(()),
        }
    }

    /// [`Clip::encode_image`] keeping less for the backward pass: with a ViT
    /// image tower, the residual blocks keep only their inputs and
    /// [`VitCheckpoint::backward`] recomputes them (one more forward pass
    /// through the blocks per step, for about a tenth of their activation
    /// memory). The returned embeddings reach the image only through that
    /// call, made after the losses' own backward pass. A ResNet tower runs
    /// as in `encode_image` (no checkpoint).
    pub fn encode_image_checkpointed(
        &self,
        image: &Tensor,
    ) -> Result<(Tensor, Option<VitCheckpoint<'_>>)> {
        let x = self.check_image(image)?;
        Ok(match &self.m.visual {
            Visual::ViT(v) => {
                let (out, checkpoint) = v.forward_checkpointed(&x)?;
                (out, Some(checkpoint))
            }
            Visual::ResNet(v) => (v.forward(&x)?, None),
        })
    }

    /// `image` checked as [`Clip::encode_image`] wants it, in the model's kind.
    fn check_image(&self, image: &Tensor) -> Result<Tensor> {
        let s = image.size();
        let r = self.config.image_resolution;
        if s.len() != 4 || s[1] != 3 || s[2] != r || s[3] != r {
            return Err(Error::internal(format!(
                "CLIP encode_image wants images [N, 3, {r}, {r}], got {s:?}"
            )));
        }
        if image.device() != self.device() || !image.is_floating_point() {
            return Err(Error::internal(format!(
                "CLIP encode_image wants float images on {:?}, got {:?} on {:?}",
                self.device(),
                image.kind(),
                image.device()
            )));
        }
        Ok(image.f_to_kind(self.kind())?)
    }

    /// Image embeddings, [N, embed_dim] in the model's dtype, from images
    /// [N, 3, R, R] already resized to [`Clip::input_resolution`] and normalised
    /// with CLIP's mean/std (any float dtype; cast to the model's).
    pub fn encode_image(&self, image: &Tensor) -> Result<Tensor> {
        let x = self.check_image(image)?;
        match &self.m.visual {
            Visual::ViT(v) => v.forward(&x),
            Visual::ResNet(v) => v.forward(&x),
        }
    }

    /// Frees the text tower's weights: the text transformer, the token and
    /// position embeddings, the final norm and the projection (63.4 M of
    /// ViT-B/32's 151.3 M parameters, 121 MiB in bf16). Guidance embeds every
    /// prompt once before its first step and never again, so the render
    /// frees them before the frame loop. The tensors stay registered (in
    /// the variable store too) but hold no elements; [`Clip::encode_text`]
    /// is an error afterwards, and so is it after a failed release (the
    /// tower may then be partly freed).
    pub fn release_text_tower(&mut self) -> Result<()> {
        // Marked first: a release that fails part-way leaves a tower that
        // must not be run either.
        self.text_released = true;
        let m = &self.m;
        let mut text = m.transformer.tensors();
        text.extend([
            &m.token_embedding,
            &m.positional_embedding,
            &m.text_projection,
        ]);
        text.extend(m.ln_final.tensors());
        tch::no_grad(|| {
            for t in text {
                let empty = Tensor::f_empty([0], (t.f_kind()?, t.device()))?;
                t.shallow_clone().f_set_data(&empty)?;
            }
            Ok(())
        })
    }

    /// Rewrites the ViT image tower's MLP weights so that QuickGELU runs as
    /// one `silu` (each block's `c_fc` × 1.702, `c_proj`'s weight ÷ 1.702): the same
    /// embeddings to the weights' rounding, with four elementwise passes
    /// over the widest activations fewer per block and step. The guide calls
    /// it before its first step when `fold-quick-gelu` is on (the default);
    /// a second call changes nothing. A ResNet tower has no QuickGELU and
    /// is left alone; the text tower is not touched.
    pub fn fold_quick_gelu(&mut self) -> Result<()> {
        match &mut self.m.visual {
            Visual::ViT(v) => v.fold_quick_gelu(),
            Visual::ResNet(_) => Ok(()),
        }
    }

    /// Text embeddings, [N, embed_dim], from token rows [N, L] (L ≤ context
    /// length) as [`Tokenizer::tokenize`] makes them; features are taken at each
    /// row's end token (its largest id), as in the official code.
    pub fn encode_text(&self, text: &Tensor) -> Result<Tensor> {
        if self.text_released {
            return Err(Error::internal(
                "CLIP encode_text after release_text_tower: embed every prompt before releasing",
            ));
        }
        let s = text.size();
        if s.len() != 2 || s[1] > self.config.context_length || s[1] < 1 {
            return Err(Error::internal(format!(
                "CLIP encode_text wants tokens [N, ≤{}], got {s:?}",
                self.config.context_length
            )));
        }
        if text.device() != self.device() || text.kind() != Kind::Int64 {
            return Err(Error::internal(format!(
                "CLIP encode_text wants int64 tokens on {:?}, got {:?} on {:?}",
                self.device(),
                text.kind(),
                text.device()
            )));
        }
        let (n, len) = (s[0], s[1]);
        let kind = self.kind();
        let x = Tensor::f_embedding(&self.m.token_embedding, text, -1, false, false)?
            .f_to_kind(kind)?
            .f_add(
                &self
                    .m
                    .positional_embedding
                    .f_narrow(0, 0, len)?
                    .f_to_kind(kind)?,
            )?;
        let x = self.m.transformer.forward(&x, true)?;
        let x = self.m.ln_final.forward(&x)?;
        let eot = text.f_argmax(-1, false)?;
        let rows = Tensor::f_arange(n, (Kind::Int64, text.device()))?;
        let x = x.f_index(&[Some(rows), Some(eot)])?;
        Ok(x.f_matmul(&self.m.text_projection)?)
    }

    /// CLIP's similarity logits: `exp(logit_scale) · cos(image, text)`,
    /// [N_images, N_texts].
    pub fn logits(&self, image: &Tensor, text: &Tensor) -> Result<Tensor> {
        let i = self.encode_image(image)?;
        let t = self.encode_text(text)?;
        let i = i.f_div(&i.f_norm_scalaropt_dim(2, [-1], true)?)?;
        let t = t.f_div(&t.f_norm_scalaropt_dim(2, [-1], true)?)?;
        Ok(i.f_matmul(&t.f_tr()?)?
            .f_mul(&self.m.logit_scale.f_exp()?)?)
    }
}

fn list_some<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut s = names
        .iter()
        .take(5)
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 5 {
        s.push_str(", …");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch size whose activations no machine can hold: every tensor
    /// proportional to it, even at one byte a row, needs more than the
    /// 128 TiB a 64-bit process can address, so libtorch's allocator refuses
    /// it at once (whatever the overcommit policy) and nothing is touched.
    const HUGE_BATCH: i64 = 1 << 48;

    fn small(vision: VisionConfig, resolution: i64) -> ClipConfig {
        ClipConfig {
            embed_dim: 16,
            image_resolution: resolution,
            vision,
            context_length: 8,
            vocab_size: 64,
            transformer_width: 16,
            transformer_heads: 2,
            transformer_layers: 1,
        }
    }

    fn small_vit() -> ClipConfig {
        let vision = VisionConfig::ViT {
            layers: 1,
            width: 16,
            patch_size: 8,
            heads: 2,
        };
        small(vision, 16)
    }

    fn small_resnet() -> ClipConfig {
        let vision = VisionConfig::ResNet {
            layers: [1, 1, 1, 1],
            width: 8,
            heads: 4,
        };
        small(vision, 32)
    }

    /// `[HUGE_BATCH, rest…]` viewing one zero row: the input costs nothing.
    fn huge(row: &[i64], kind: Kind) -> Tensor {
        let with_batch = |n: i64| {
            std::iter::once(n)
                .chain(row.iter().copied())
                .collect::<Vec<_>>()
        };
        Tensor::zeros(with_batch(1), (kind, Device::Cpu)).expand(with_batch(HUGE_BATCH), false)
    }

    /// Parameters libtorch cannot allocate make `Clip::new` an error (the
    /// one `Clip::load` passes on), not a panic; the shape-only build of the
    /// same configuration allocates nothing and still lists the shapes.
    #[test]
    fn unallocatable_parameters_are_an_error() {
        // 2^50 tokens × 64: a 2^58-byte embedding (256 PiB).
        let config = ClipConfig {
            vocab_size: 1 << 50,
            transformer_width: 64,
            transformer_heads: 1,
            ..small_vit()
        };
        config.validate().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let e = Clip::new(&vs.root(), &config).unwrap_err();
        assert!(e.message.contains("allocate"), "{e}");

        let shapes = config.state_dict_shapes().unwrap();
        assert_eq!(shapes["token_embedding.weight"], [1 << 50, 64]);
    }

    /// Forwards whose activations cannot be allocated are errors, and the
    /// model still works afterwards.
    #[test]
    fn unallocatable_activations_are_an_error() {
        for config in [small_vit(), small_resnet()] {
            let vs = nn::VarStore::new(Device::Cpu);
            let clip = Clip::new(&vs.root(), &config).unwrap();
            let r = config.image_resolution;
            let images = huge(&[3, r, r], Kind::Float);
            let tokens = huge(&[config.context_length], Kind::Int64);

            let e = clip.encode_image(&images).unwrap_err();
            assert!(e.message.contains("allocate"), "{:?}: {e}", config.vision);
            let e = tch::no_grad(|| clip.encode_image(&images)).unwrap_err();
            assert!(e.message.contains("allocate"), "{:?}: {e}", config.vision);
            assert!(clip.encode_image_checkpointed(&images).is_err());
            let e = clip.encode_text(&tokens).unwrap_err();
            assert!(e.message.contains("allocate"), "{:?}: {e}", config.vision);

            let one = Tensor::zeros([2, 3, r, r], (Kind::Float, Device::Cpu));
            let text = Tensor::zeros([2, config.context_length], (Kind::Int64, Device::Cpu));
            assert_eq!(clip.encode_image(&one).unwrap().size(), [2, 16]);
            assert_eq!(clip.logits(&one, &text).unwrap().size(), [2, 2]);
        }
    }
}
