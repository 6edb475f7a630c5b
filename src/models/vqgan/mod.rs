//! taming-transformers VQGAN (`VQModel` and `GumbelVQ`) in tch.
//!
//! The image model of zoetrope: an encoder maps an image in [-1, 1] to a latent
//! grid f times smaller, a quantiser snaps each latent vector to a codebook
//! entry, and the decoder maps the quantised grid back to an image. The render
//! loop optimises the latent z directly (Crowson's "z + quantize" method), so
//! this module exposes the pieces separately: [`Vqgan::encode`],
//! [`Vqgan::quantize`], [`Vqgan::decode`], the codebook and code embedding.
//!
//! Variables live under the official state-dict keys (`encoder.down.0.block.0.conv1.weight`,
//! `quantize.embedding.weight`, ...), so a Lightning checkpoint converted to
//! safetensors loads without renaming; the architecture is inferred from the
//! tensor shapes ([`VqganConfig::infer`]). Parity with the official modules is
//! proven by `tests/it/vqgan_parity.rs` against fixtures made by
//! `scripts/reference/gen_vqgan_fixtures.py`.
//!
//! GumbelVQ at inference: taming's `GumbelQuantize` draws Gumbel noise even in
//! eval mode; zoetrope uses the noise-free choice (argmax of the logits), and
//! for optimisation, like pytti and the VQGAN+CLIP notebooks, treats the Gumbel
//! codebook `quantize.embed.weight` like a VQ codebook (nearest code).

mod config;
mod layers;
mod safetensors_file;

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn;
use tch::{Device, Kind, Tensor};

pub use config::{QuantizerKind, VqganConfig, VQGAN_MODEL_NAMES};
use layers::{Conv2d, Decoder, Encoder};
use safetensors_file::SafetensorsFile;

use crate::models::ModelOptions;
use crate::{Error, Result};

/// The key prefix of the first stage inside a Net2NetTransformer checkpoint
/// (the sflckr and coco downloads are whole transformers).
pub const FIRST_STAGE_PREFIX: &str = "first_stage_model.";

/// Top-level module names of a VQModel / GumbelVQ state dict that we build.
/// Keys under any other name (`loss.*`, `colorize`, a transformer's own weights)
/// are ignored when loading.
const MODEL_ROOTS: [&str; 5] = [
    "encoder.",
    "decoder.",
    "quantize.",
    "quant_conv.",
    "post_quant_conv.",
];

/// A loaded (or freshly built) VQGAN.
pub struct Vqgan {
    config: VqganConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    /// GumbelVQ only: 1×1 conv from the pre-quantisation latent to code logits.
    proj: Option<Conv2d>,
    /// `[n_embed, embed_dim]`: `quantize.embedding.weight` or `quantize.embed.weight`.
    codebook: Tensor,
    /// Owns the variables when the model was built by [`Vqgan::load`].
    _vs: Option<nn::VarStore>,
}

impl std::fmt::Debug for Vqgan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vqgan")
            .field("config", &self.config)
            .field("kind", &self.kind())
            .field("device", &self.device())
            .finish()
    }
}

impl Vqgan {
    /// Builds the model's variables under `vs` (all zero; fill them with
    /// `VarStore::load`/`copy_` or use [`Vqgan::load`]). `vs` should be the
    /// root path so variable names equal the official keys. Fails (instead of
    /// panicking) when the weights cannot be allocated.
    pub fn new(vs: &nn::Path, config: &VqganConfig) -> Result<Vqgan> {
        Self::new_with(vs, config, ModelOptions::default())
    }

    /// [`Vqgan::new`] with the model-level switches `options`.
    pub fn new_with(vs: &nn::Path, config: &VqganConfig, options: ModelOptions) -> Result<Vqgan> {
        let encoder = Encoder::new(vs / "encoder", config, options)?;
        let decoder = Decoder::new(vs / "decoder", config, options)?;
        let c1 = |p: nn::Path, i, o| Conv2d::new(p, i, o, 1, 1, 0);
        let quant_conv = c1(vs / "quant_conv", config.z_channels, config.embed_dim)?;
        let post_quant_conv = c1(vs / "post_quant_conv", config.embed_dim, config.z_channels)?;
        let q = vs / "quantize";
        let codes = [config.n_embed, config.embed_dim];
        let (proj, codebook) = match config.quantizer {
            QuantizerKind::Nearest => (None, (&q / "embedding").f_zeros("weight", &codes)?),
            QuantizerKind::Gumbel => (
                Some(c1(&q / "proj", config.z_channels, config.n_embed)?),
                (&q / "embed").f_zeros("weight", &codes)?,
            ),
        };
        Ok(Vqgan {
            config: config.clone(),
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
            proj,
            codebook,
            _vs: None,
        })
    }

    /// Loads a VQGAN from a `.safetensors` file in fp32 (see [`Vqgan::load_with_kind`]).
    pub fn load(path: &Path, device: Device) -> Result<Vqgan> {
        Self::load_with_kind(path, device, Kind::Float)
    }

    /// Loads a VQGAN from a `.safetensors` file holding the official state-dict
    /// keys (optionally under `first_stage_model.`; `loss.*` and other unrelated
    /// keys are ignored), inferring the architecture from the shapes. The
    /// weights are converted to `kind` (fp32 or bf16) on `device` and frozen:
    /// the render loop optimises the latent, never the model.
    pub fn load_with_kind(path: &Path, device: Device, kind: Kind) -> Result<Vqgan> {
        Self::load_with(path, device, kind, ModelOptions::default())
    }

    /// [`Vqgan::load_with_kind`] with the model-level switches `options`.
    pub fn load_with(
        path: &Path,
        device: Device,
        kind: Kind,
        options: ModelOptions,
    ) -> Result<Vqgan> {
        let shown = path.display().to_string();
        let mut file = SafetensorsFile::open(path)?;
        let prefix = if file
            .entries
            .keys()
            .any(|k| k.starts_with(FIRST_STAGE_PREFIX))
        {
            FIRST_STAGE_PREFIX
        } else {
            ""
        };
        // Official key (prefix stripped) -> key in the file.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut shapes: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, e) in &file.entries {
            let Some(short) = k.strip_prefix(prefix) else {
                continue;
            };
            if !MODEL_ROOTS.iter().any(|r| short.starts_with(r)) {
                continue;
            }
            names.insert(short.to_string(), k.clone());
            shapes.insert(short.to_string(), e.shape.clone());
        }
        let config = VqganConfig::infer_from(&shapes, &shown)?;
        if config.in_channels != 3 || config.out_ch != 3 {
            return Err(Error::weights(format!(
                "{shown} holds a VQGAN for {}-channel inputs and {}-channel outputs, not \
                 RGB images (a segmentation / conditioning stage?); use an image VQGAN",
                config.in_channels, config.out_ch
            )));
        }
        check_keys(&config, &shapes, &shown)?;

        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let mut model = Vqgan::new_with(&vs.root(), &config, options)
            .map_err(|e| e.context(format!("loading {shown}")))?;
        for (name, mut var) in vs.variables() {
            let file_key = names
                .get(&name)
                .ok_or_else(|| Error::weights(format!("{shown}: tensor `{name}` is missing")))?;
            let src = file.read(file_key)?;
            tch::no_grad(|| var.f_copy_(&src.f_to_kind(kind)?))
                .map_err(|e| Error::weights(format!("{shown}: loading `{name}`: {e}")))?;
        }
        vs.freeze();
        model._vs = Some(vs);
        Ok(model)
    }

    /// The architecture.
    pub fn config(&self) -> &VqganConfig {
        &self.config
    }

    /// Spatial factor f: an image of W×H pixels has a latent grid of (W/f)×(H/f).
    pub fn factor(&self) -> i64 {
        self.config.factor()
    }

    /// The weights' element type (fp32 or bf16).
    pub fn kind(&self) -> Kind {
        self.codebook.kind()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.codebook.device()
    }

    /// The codebook, `[n_embed, embed_dim]`.
    pub fn codebook(&self) -> &Tensor {
        &self.codebook
    }

    /// The pre-quantisation latent: `quant_conv(encoder(x))` for an image batch
    /// `[B, 3, H, W]` in [-1, 1] with H, W multiples of [`Vqgan::factor`].
    /// The input is cast to the model's kind.
    pub fn encode_prequant(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.f_to_kind(self.kind())?;
        self.quant_conv.forward(&self.encoder.forward(&x)?)
    }

    /// GumbelVQ only: code logits `[B, n_embed, h, w]` of a pre-quantisation latent.
    pub fn gumbel_logits(&self, prequant: &Tensor) -> Result<Option<Tensor>> {
        self.proj
            .as_ref()
            .map(|p| p.forward(&prequant.f_to_kind(self.kind())?))
            .transpose()
    }

    /// Encodes an image batch `[B, 3, H, W]` in [-1, 1] to the latent z the
    /// render loop optimises, `[B, embed_dim, H/f, W/f]`, not yet quantised.
    ///
    /// VQModel: `quant_conv(encoder(x))`, exactly taming's pre-quantisation h.
    /// GumbelVQ: the codebook vectors of the argmax codes of `quantize.proj(h)`,
    /// because the Gumbel model's h lives in logit-producing space, not in
    /// codebook space; this is taming's `GumbelVQ.encode` without the Gumbel
    /// noise, and what pytti and the notebooks start from. Either way
    /// [`Vqgan::quantize`] of the result gives the model's codes.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.encode_prequant(x)?;
        match self.gumbel_logits(&h)? {
            Some(logits) => self.embed_codes(&logits.f_argmax(1, false)?),
            None => Ok(h),
        }
    }

    /// Nearest codebook entry per latent position (squared Euclidean distance,
    /// computed in fp32 so bf16 models pick the same codes): returns
    /// `(z_q [B, embed_dim, h, w], indices [B, h, w] int64)`. No straight-through
    /// gradient is attached; callers add `z + (z_q - z).detach()` as needed.
    pub fn quantize(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = z.size4().map_err(|_| {
            Error::internal(format!(
                "a VQGAN latent must be [B, C, h, w], not {:?}",
                z.size()
            ))
        })?;
        let flat = z
            .f_detach()?
            .f_to_kind(Kind::Float)?
            .f_permute([0, 2, 3, 1])?
            .f_reshape([b * h * w, c])?;
        let cb = self.codebook.f_detach()?.f_to_kind(Kind::Float)?;
        let d = flat
            .f_square()?
            .f_sum_dim_intlist(1, true, Kind::Float)?
            .f_add(&cb.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?)?
            .f_sub(&flat.f_matmul(&cb.f_tr()?)?.f_mul_scalar(2.0)?)?;
        let indices = d.f_argmin(1, false)?.f_reshape([b, h, w])?;
        Ok((self.embed_codes(&indices)?, indices))
    }

    /// Rewrites the convolution kernels in channels-last layout
    /// ([`crate::gpu::make_channels_last`]); a no-op for a model whose
    /// variables belong to a caller's store.
    pub fn make_channels_last(&self) -> Result<()> {
        match &self._vs {
            Some(vs) => crate::gpu::make_channels_last(vs),
            None => Ok(()),
        }
    }

    /// Codebook vectors of code indices `[B, h, w]` as a latent `[B, embed_dim, h, w]`.
    pub fn embed_codes(&self, indices: &Tensor) -> Result<Tensor> {
        let (b, h, w) = indices.size3().map_err(|_| {
            Error::internal(format!(
                "code indices must be [B, h, w], not {:?}",
                indices.size()
            ))
        })?;
        Ok(self
            .codebook
            .f_index_select(0, &indices.f_reshape([-1])?.f_to_device(self.device())?)?
            .f_reshape([b, h, w, self.config.embed_dim])?
            .f_permute([0, 3, 1, 2])?)
    }

    /// Decodes a quantised latent `[B, embed_dim, h, w]` to an image
    /// `[B, 3, f·h, f·w]` in about [-1, 1]: `decoder(post_quant_conv(z_q))`.
    /// The input is cast to the model's kind.
    pub fn decode(&self, z_q: &Tensor) -> Result<Tensor> {
        let z = z_q.f_to_kind(self.kind())?;
        self.decoder.forward(&self.post_quant_conv.forward(&z)?)
    }
}

/// Compares a file's tensors with what the inferred architecture needs and
/// reports every difference at once.
fn check_keys(
    config: &VqganConfig,
    shapes: &BTreeMap<String, Vec<i64>>,
    shown: &str,
) -> Result<()> {
    let expected = config.expected_shapes();
    let mut problems = Vec::new();
    for (k, s) in &expected {
        match shapes.get(k) {
            None => problems.push(format!("missing `{k}` (shape {s:?})")),
            Some(f) if f != s => problems.push(format!("`{k}` has shape {f:?}, expected {s:?}")),
            _ => {}
        }
    }
    for k in shapes.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("unexpected `{k}`"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    problems.truncate(8);
    let more = if n > 8 {
        format!(" (and {} more)", n - 8)
    } else {
        String::new()
    };
    Err(Error::weights(format!(
        "{shown} does not match a taming-transformers VQGAN with the architecture its \
         shapes suggest ({} levels, ch {}, {} codes{}): {}{more}. The file may be \
         truncated or from a different model; re-import it with `zoetrope weights import`",
        config.ch_mult.len(),
        config.ch,
        config.n_embed,
        if config.is_gumbel() { ", Gumbel" } else { "" },
        problems.join("; ")
    )))
}
