//! VQGAN hyper-parameters: the six named models and inference from tensor shapes.
//!
//! taming-transformers describes a VQGAN by a `ddconfig` (shared by encoder and
//! decoder) plus `n_embed` / `embed_dim`. Everything that decides tensor shapes
//! can be read back from a state dict, which is what [`VqganConfig::infer`]
//! does; so a checkpoint loads even when its YAML is unknown. The only
//! hyper-parameter not visible in shapes is `resolution`, and in the official
//! code it only decides *where* attention sits (`curr_res in attn_resolutions`);
//! we therefore store the attention levels directly ([`VqganConfig::attn_levels`]).

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Which quantiser sits between encoder and decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizerKind {
    /// `VectorQuantizer2` (taming `VQModel`): codebook `quantize.embedding.weight`,
    /// nearest code by squared Euclidean distance.
    Nearest,
    /// `GumbelQuantize` (taming `GumbelVQ`): `quantize.proj` (1×1 conv to
    /// `n_embed` logits) and codebook `quantize.embed.weight`.
    Gumbel,
}

/// Architecture of a taming VQModel / GumbelVQ, as far as tensor shapes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqganConfig {
    /// Base channel count (`ddconfig.ch`).
    pub ch: i64,
    /// Channel multiplier per resolution level (`ddconfig.ch_mult`).
    pub ch_mult: Vec<i64>,
    /// Residual blocks per encoder level (the decoder has one more).
    pub num_res_blocks: i64,
    /// Levels (0 = full resolution) whose blocks are followed by an attention
    /// block; the same levels in the encoder and the decoder, exactly as taming's
    /// `curr_res in attn_resolutions` test places them.
    pub attn_levels: Vec<usize>,
    /// Image channels in (`ddconfig.in_channels`).
    pub in_channels: i64,
    /// Image channels out (`ddconfig.out_ch`).
    pub out_ch: i64,
    /// Encoder output / decoder input channels (`ddconfig.z_channels`, `double_z: false`).
    pub z_channels: i64,
    /// Codebook vector size (`embed_dim`).
    pub embed_dim: i64,
    /// Codebook size (`n_embed`).
    pub n_embed: i64,
    /// VectorQuantizer or GumbelQuantize.
    pub quantizer: QuantizerKind,
}

/// The `vqgan_model` names of the scene file (from the catalog).
pub use crate::catalog::VQGAN_MODEL_NAMES;

impl VqganConfig {
    /// The tiny, untrained VQGAN that `zoetrope weights tiny` generates and
    /// the tests build (a VQModel: 4 levels of 32-64 channels, attention at
    /// the lowest, a 256-entry codebook of 32 dimensions).
    pub fn tiny() -> VqganConfig {
        VqganConfig {
            ch: 32,
            ch_mult: vec![1, 1, 2, 2],
            num_res_blocks: 1,
            attn_levels: vec![3],
            in_channels: 3,
            out_ch: 3,
            z_channels: 32,
            embed_dim: 32,
            n_embed: 256,
            quantizer: QuantizerKind::Nearest,
        }
    }

    /// Builds a config from taming's own `ddconfig` vocabulary, turning
    /// `attn_resolutions` + `resolution` into attention levels the way
    /// taming's Encoder does (`curr_res = resolution / 2^level`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_ddconfig(
        ch: i64,
        ch_mult: &[i64],
        num_res_blocks: i64,
        attn_resolutions: &[i64],
        resolution: i64,
        z_channels: i64,
        embed_dim: i64,
        n_embed: i64,
        quantizer: QuantizerKind,
    ) -> VqganConfig {
        let attn_levels = (0..ch_mult.len())
            .filter(|&l| attn_resolutions.contains(&(resolution >> l)))
            .collect();
        VqganConfig {
            ch,
            ch_mult: ch_mult.to_vec(),
            num_res_blocks,
            attn_levels,
            in_channels: 3,
            out_ch: 3,
            z_channels,
            embed_dim,
            n_embed,
            quantizer,
        }
    }

    /// The full-size configuration of a named model (the scene file's `vqgan_model`).
    ///
    /// Sources (the YAML files the VQGAN+CLIP notebooks and pytti-core download;
    /// pytti-core lists their URLs in `src/pytti/config/_models/vqgan/*.yaml`):
    ///
    /// - `imagenet`: taming `vqgan_imagenet_f16_16384` (`heibox …/f/274fb24ed38341bfa753`):
    ///   VQModel, embed_dim 256, n_embed 16384, ch 128, ch_mult `[1,1,2,2,4]`,
    ///   num_res_blocks 2, attn_resolutions `[16]`, resolution 256, z_channels 256.
    /// - `imagenet_1024`: taming `vqgan_imagenet_f16_1024`: the same ddconfig, n_embed 1024.
    /// - `coco`: the COCO-Stuff transformer config (`dl.nmkd.de/ai/clip/coco/coco.yaml`) is a
    ///   Net2NetTransformer whose `first_stage_config` is a VQModel with the f16 ddconfig and
    ///   n_embed 8192 (confirmed from taming's `configs/coco_scene_images_transformer.yaml`,
    ///   which uses the same COCO first stage `coco_epoch117.ckpt`). Its checkpoint keys
    ///   carry the `first_stage_model.` prefix.
    /// - `wikiart`: `wikiart_f16_16384_8145600.yaml` (eaidata.bmk.sh, the "WikiArt 16384"
    ///   of the notebooks): VQModel with the f16 ddconfig and n_embed 16384. **Not confirmed
    ///   from the YAML itself** (no copy could be found); the shapes follow the model's name
    ///   and the imagenet f16 architecture it was trained with. Loading does not depend on
    ///   this: [`VqganConfig::infer`] reads the architecture from the file.
    /// - `sflckr`: `2020-11-09T13-31-51-project.yaml` (heibox `73487ab6e5314cb5adba`), a
    ///   Net2NetTransformer; first stage as in taming's `configs/sflckr_transformer.yaml`:
    ///   VQModel, f16 ddconfig, n_embed 1024, keys under `first_stage_model.`.
    /// - `openimages`: taming `vqgan_gumbel_f8` (heibox `2e5662443a6b4307b470`,
    ///   `configs/model.yaml`): GumbelVQ, embed_dim 256, n_embed 8192, ch 128,
    ///   ch_mult `[1,1,2,4]`, num_res_blocks 2, attn_resolutions `[32]`, resolution 256,
    ///   z_channels 256 (f = 8).
    pub fn named(name: &str) -> Result<VqganConfig> {
        let f16 = |n_embed| {
            VqganConfig::from_ddconfig(
                128,
                &[1, 1, 2, 2, 4],
                2,
                &[16],
                256,
                256,
                256,
                n_embed,
                QuantizerKind::Nearest,
            )
        };
        match name {
            "imagenet" | "wikiart" => Ok(f16(16384)),
            "imagenet_1024" | "sflckr" => Ok(f16(1024)),
            "coco" => Ok(f16(8192)),
            "openimages" => Ok(VqganConfig::from_ddconfig(
                128,
                &[1, 1, 2, 4],
                2,
                &[32],
                256,
                256,
                256,
                8192,
                QuantizerKind::Gumbel,
            )),
            other => {
                let closest =
                    crate::catalog::closest(other, VQGAN_MODEL_NAMES).unwrap_or("imagenet");
                Err(Error::input(format!(
                    "unknown vqgan_model \"{other}\" (did you mean \"{closest}\"?); \
                     known models: {}",
                    VQGAN_MODEL_NAMES.join(", ")
                )))
            }
        }
    }

    /// Spatial down-scaling factor f = 2^(levels − 1): an image of W×H pixels has a
    /// latent grid of (W/f)×(H/f).
    pub fn factor(&self) -> i64 {
        1 << (self.ch_mult.len().saturating_sub(1))
    }

    /// The named models (see [`VqganConfig::named`]) with exactly this
    /// architecture; several share one (imagenet and wikiart, imagenet_1024 and
    /// sflckr), and a custom VQGAN matches none. Used to check that a weights
    /// file is the model a scene asks for.
    pub fn matching_names(&self) -> Vec<&'static str> {
        VQGAN_MODEL_NAMES
            .into_iter()
            .filter(|n| VqganConfig::named(n).is_ok_and(|c| &c == self))
            .collect()
    }

    /// True for GumbelVQ models.
    pub fn is_gumbel(&self) -> bool {
        self.quantizer == QuantizerKind::Gumbel
    }

    /// Every tensor the official state dict holds for this architecture (`loss.*`
    /// excluded), with its shape; computed without building the model, so the
    /// full-size models can be checked cheaply. [`super::Vqgan::new`] creates
    /// exactly these variables (a test checks it).
    pub fn expected_shapes(&self) -> BTreeMap<String, Vec<i64>> {
        let mut m = ShapeTable::default();
        self.encoder_shapes(&mut m);
        self.decoder_shapes(&mut m);

        // Quantiser and the 1×1 convs around it.
        m.conv("quant_conv", self.embed_dim, self.z_channels, 1);
        m.conv("post_quant_conv", self.z_channels, self.embed_dim, 1);
        match self.quantizer {
            QuantizerKind::Nearest => {
                m.tensor(
                    "quantize.embedding.weight",
                    vec![self.n_embed, self.embed_dim],
                );
            }
            QuantizerKind::Gumbel => {
                m.conv("quantize.proj", self.n_embed, self.z_channels, 1);
                m.tensor("quantize.embed.weight", vec![self.n_embed, self.embed_dim]);
            }
        }
        m.0
    }

    /// The encoder's tensors (see [`VqganConfig::expected_shapes`]).
    fn encoder_shapes(&self, m: &mut ShapeTable) {
        let levels = self.ch_mult.len();
        let ch = self.ch;
        m.conv("encoder.conv_in", ch, self.in_channels, 3);
        let mut block_in = ch;
        for l in 0..levels {
            let block_out = ch * self.ch_mult[l];
            for b in 0..self.num_res_blocks {
                m.resnet(&format!("encoder.down.{l}.block.{b}"), block_in, block_out);
                block_in = block_out;
                if self.attn_levels.contains(&l) {
                    m.attn(&format!("encoder.down.{l}.attn.{b}"), block_in);
                }
            }
            if l + 1 != levels {
                let p = format!("encoder.down.{l}.downsample.conv");
                m.conv(&p, block_in, block_in, 3);
            }
        }
        m.resnet("encoder.mid.block_1", block_in, block_in);
        m.attn("encoder.mid.attn_1", block_in);
        m.resnet("encoder.mid.block_2", block_in, block_in);
        m.norm("encoder.norm_out", block_in);
        m.conv("encoder.conv_out", self.z_channels, block_in, 3);
    }

    /// The decoder's tensors (see [`VqganConfig::expected_shapes`]).
    fn decoder_shapes(&self, m: &mut ShapeTable) {
        let levels = self.ch_mult.len();
        let ch = self.ch;
        let mut block_in = ch * self.ch_mult[levels - 1];
        m.conv("decoder.conv_in", block_in, self.z_channels, 3);
        m.resnet("decoder.mid.block_1", block_in, block_in);
        m.attn("decoder.mid.attn_1", block_in);
        m.resnet("decoder.mid.block_2", block_in, block_in);
        for l in (0..levels).rev() {
            let block_out = ch * self.ch_mult[l];
            for b in 0..=self.num_res_blocks {
                m.resnet(&format!("decoder.up.{l}.block.{b}"), block_in, block_out);
                block_in = block_out;
                if self.attn_levels.contains(&l) {
                    m.attn(&format!("decoder.up.{l}.attn.{b}"), block_in);
                }
            }
            if l != 0 {
                let p = format!("decoder.up.{l}.upsample.conv");
                m.conv(&p, block_in, block_in, 3);
            }
        }
        m.norm("decoder.norm_out", block_in);
        m.conv("decoder.conv_out", self.out_ch, block_in, 3);
    }

    /// Reads the architecture back from a state dict's tensor shapes (keys without
    /// the `first_stage_model.` prefix; extra keys are ignored here), as the
    /// official loaders would need the YAML for. `what` names the source (a file)
    /// for error messages.
    ///
    /// Fails with a clear [`Error::weights`] when the tensors are not a taming
    /// VQModel/GumbelVQ; the caller then checks the full key set against
    /// [`VqganConfig::expected_shapes`].
    pub fn infer(shapes: &BTreeMap<String, Vec<i64>>) -> Result<VqganConfig> {
        Self::infer_from(shapes, "the weights")
    }

    /// [`VqganConfig::infer`] with the source named in errors.
    pub fn infer_from(shapes: &BTreeMap<String, Vec<i64>>, what: &str) -> Result<VqganConfig> {
        let get = |k: &str, rank: usize| -> Result<&Vec<i64>> {
            match shapes.get(k) {
                Some(s) if s.len() == rank => Ok(s),
                Some(s) => Err(Error::weights(format!(
                    "{what}: tensor `{k}` has shape {s:?}, expected {rank} dimensions; \
                     this is not a taming-transformers VQGAN"
                ))),
                None => Err(Error::weights(format!(
                    "{what}: tensor `{k}` is missing; this is not a taming-transformers \
                     VQGAN (VQModel or GumbelVQ) state dict"
                ))),
            }
        };
        let conv_in = get("encoder.conv_in.weight", 4)?;
        let (ch, in_channels) = (conv_in[0], conv_in[1]);
        if ch <= 0 {
            return Err(Error::weights(format!(
                "{what}: encoder.conv_in has no channels"
            )));
        }
        let mut ch_mult = Vec::new();
        while shapes.contains_key(&format!(
            "encoder.down.{}.block.0.conv1.weight",
            ch_mult.len()
        )) {
            let l = ch_mult.len();
            let out = get(&format!("encoder.down.{l}.block.0.conv1.weight"), 4)?[0];
            if out % ch != 0 {
                return Err(Error::weights(format!(
                    "{what}: encoder level {l} has {out} channels, not a multiple of ch = {ch}"
                )));
            }
            ch_mult.push(out / ch);
        }
        if ch_mult.is_empty() {
            return Err(Error::weights(format!(
                "{what}: no encoder.down.0.block.0 tensors; this is not a taming VQGAN"
            )));
        }
        if let Some(bad) = ch_mult.iter().map(|m| m * ch).find(|c| c % 32 != 0) {
            return Err(Error::weights(format!(
                "{what}: a level has {bad} channels, not a multiple of 32 as taming's \
                 GroupNorm(32) needs; this is not a taming-transformers VQGAN"
            )));
        }
        let mut num_res_blocks = 0;
        while shapes.contains_key(&format!(
            "encoder.down.0.block.{num_res_blocks}.conv1.weight"
        )) {
            num_res_blocks += 1;
        }
        let attn_levels = (0..ch_mult.len())
            .filter(|l| shapes.contains_key(&format!("encoder.down.{l}.attn.0.q.weight")))
            .collect();
        let z_channels = get("encoder.conv_out.weight", 4)?[0];
        let dec_z = get("decoder.conv_in.weight", 4)?[1];
        if dec_z != z_channels {
            return Err(Error::weights(format!(
                "{what}: encoder outputs {z_channels} channels but the decoder takes {dec_z}; \
                 VQGANs trained with double_z = true are not supported"
            )));
        }
        let out_ch = get("decoder.conv_out.weight", 4)?[0];
        let embed_dim = get("quant_conv.weight", 4)?[0];
        let (quantizer, n_embed) = if shapes.contains_key("quantize.proj.weight") {
            (QuantizerKind::Gumbel, get("quantize.embed.weight", 2)?[0])
        } else {
            (
                QuantizerKind::Nearest,
                get("quantize.embedding.weight", 2)?[0],
            )
        };
        Ok(VqganConfig {
            ch,
            ch_mult,
            num_res_blocks,
            attn_levels,
            in_channels,
            out_ch,
            z_channels,
            embed_dim,
            n_embed,
            quantizer,
        })
    }
}

/// Builds a state dict's tensor shapes layer by layer, with the official
/// key names (`<prefix>.weight`, `<prefix>.bias`, …).
#[derive(Default)]
struct ShapeTable(BTreeMap<String, Vec<i64>>);

impl ShapeTable {
    fn tensor(&mut self, key: &str, shape: Vec<i64>) {
        self.0.insert(key.to_string(), shape);
    }

    /// A `k × k` convolution from `i` to `o` channels.
    fn conv(&mut self, p: &str, o: i64, i: i64, k: i64) {
        self.tensor(&format!("{p}.weight"), vec![o, i, k, k]);
        self.tensor(&format!("{p}.bias"), vec![o]);
    }

    /// A group norm over `c` channels.
    fn norm(&mut self, p: &str, c: i64) {
        self.tensor(&format!("{p}.weight"), vec![c]);
        self.tensor(&format!("{p}.bias"), vec![c]);
    }

    /// A residual block from `i` to `o` channels (a 1×1 shortcut when they
    /// differ).
    fn resnet(&mut self, p: &str, i: i64, o: i64) {
        self.norm(&format!("{p}.norm1"), i);
        self.conv(&format!("{p}.conv1"), o, i, 3);
        self.norm(&format!("{p}.norm2"), o);
        self.conv(&format!("{p}.conv2"), o, o, 3);
        if i != o {
            self.conv(&format!("{p}.nin_shortcut"), o, i, 1);
        }
    }

    /// A single-head attention block over `c` channels.
    fn attn(&mut self, p: &str, c: i64) {
        self.norm(&format!("{p}.norm"), c);
        for n in ["q", "k", "v", "proj_out"] {
            self.conv(&format!("{p}.{n}"), c, c, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_and_attention_levels() {
        let c = VqganConfig::named("imagenet").unwrap();
        assert_eq!(c.factor(), 16);
        assert_eq!(c.attn_levels, vec![4]);
        let g = VqganConfig::named("openimages").unwrap();
        assert_eq!(g.factor(), 8);
        assert_eq!(g.attn_levels, vec![3]);
        assert!(g.is_gumbel());
    }

    #[test]
    fn matching_names_groups_shared_architectures() {
        let c = VqganConfig::named("wikiart").unwrap();
        assert_eq!(c.matching_names(), vec!["imagenet", "wikiart"]);
        let c = VqganConfig::named("coco").unwrap();
        assert_eq!(c.matching_names(), vec!["coco"]);
    }

    #[test]
    fn unknown_name_suggests() {
        let e = VqganConfig::named("imagenett").unwrap_err();
        assert!(e.message.contains("imagenet"), "{}", e.message);
    }

    #[test]
    fn infer_roundtrip_on_expected_shapes() {
        for n in VQGAN_MODEL_NAMES {
            let c = VqganConfig::named(n).unwrap();
            assert_eq!(VqganConfig::infer(&c.expected_shapes()).unwrap(), c, "{n}");
        }
    }
}
