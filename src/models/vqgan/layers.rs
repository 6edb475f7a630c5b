//! The encoder and decoder of taming-transformers
//! (`taming/modules/diffusionmodules/model.py`), written for tch with the
//! official submodule names as `VarStore` paths.
//!
//! Semantics kept from the original: GroupNorm with 32 groups and eps 1e-6,
//! swish (`x·sigmoid(x)`) non-linearity, a 1×1 `nin_shortcut` when a residual
//! block changes channels, single-head spatial self-attention scaled by
//! `C^-1/2`, down-sampling by zero padding right/bottom by one pixel then a
//! stride-2 3×3 conv, up-sampling by nearest ×2 then a 3×3 conv. Dropout is 0
//! in every released VQGAN and is omitted.
//!
//! Every constructor and forward returns a [`Result`]: libtorch's failures
//! (out of memory above all) come back as errors, never as panics.

use tch::nn;
use tch::Tensor;

use super::config::VqganConfig;
use crate::models::{lean, ModelOptions};
use crate::Result;

/// `nn.Conv2d` (square kernel, one group) under its official variable names.
/// The weights start at zero: a model is always filled from a file (or by a
/// test's generator) before use.
#[derive(Debug)]
pub(crate) struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(vs: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> Result<Self> {
        Ok(Conv2d {
            weight: vs.f_zeros("weight", &[o, i, k, k])?,
            bias: vs.f_zeros("bias", &[o])?,
            stride,
            padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(
            &self.weight,
            Some(&self.bias),
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            1,
        )?)
    }

    /// This convolution for [`lean::conv`] (3×3, stride 1, padding 1 in the
    /// decoder's uses).
    fn lean(&self) -> lean::Conv<'_> {
        lean::Conv {
            weight: &self.weight,
            bias: Some(&self.bias),
            stride: self.stride,
            padding: self.padding,
        }
    }
}

fn normalize(vs: nn::Path, c: i64) -> Result<GroupNorm> {
    Ok(GroupNorm {
        weight: vs.f_ones("weight", &[c])?,
        bias: vs.f_zeros("bias", &[c])?,
    })
}

/// `nn.GroupNorm(32, C, eps=1e-6)` under its official variable names.
#[derive(Debug)]
struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
}

const GROUPS: i64 = 32;
const EPS: f64 = 1e-6;

impl GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_group_norm(GROUPS, Some(&self.weight), Some(&self.bias), EPS, true)?)
    }

    /// `conv(swish(norm(x)))` for a 3×3, stride 1, padding 1 `conv`: as one
    /// lean autograd node where it applies ([`crate::models::lean`]: the
    /// backward pass then keeps `x` alone instead of three maps).
    fn swish_conv(&self, conv: &Conv2d, x: &Tensor, opts: ModelOptions) -> Result<Tensor> {
        let norm = lean::Norm {
            weight: &self.weight,
            bias: &self.bias,
            groups: GROUPS,
            eps: EPS,
        };
        if let Some(y) = lean::conv(x, Some(norm), conv.lean(), opts.lean_activations) {
            return y;
        }
        conv.forward(&swish(&self.forward(x)?)?)
    }
}

/// A 3×3, stride 1, padding 1 convolution that keeps nothing for the
/// backward pass where it applies ([`crate::models::lean`]); the decoder's
/// up-sampling convolutions, whose input is 4× the map before it.
fn lean_conv3(conv: &Conv2d, x: &Tensor, opts: ModelOptions) -> Result<Tensor> {
    lean::conv(x, None, conv.lean(), opts.lean_activations).unwrap_or_else(|| conv.forward(x))
}

/// swish, as taming's `nonlinearity`.
fn swish(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_silu()?)
}

/// `ResnetBlock` without the time embedding (temb_channels = 0 in VQGANs).
#[derive(Debug)]
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(vs: nn::Path, i: i64, o: i64) -> Result<Self> {
        Ok(ResnetBlock {
            norm1: normalize(&vs / "norm1", i)?,
            conv1: Conv2d::new(&vs / "conv1", i, o, 3, 1, 1)?,
            norm2: normalize(&vs / "norm2", o)?,
            conv2: Conv2d::new(&vs / "conv2", o, o, 3, 1, 1)?,
            nin_shortcut: (i != o)
                .then(|| Conv2d::new(&vs / "nin_shortcut", i, o, 1, 1, 0))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor, opts: ModelOptions) -> Result<Tensor> {
        let h = self.norm1.swish_conv(&self.conv1, x, opts)?;
        let h = self.norm2.swish_conv(&self.conv2, &h, opts)?;
        Ok(match &self.nin_shortcut {
            Some(s) => s.forward(x)?.f_add(&h)?,
            None => x.f_add(&h)?,
        })
    }
}

/// `AttnBlock`: single-head self-attention over all spatial positions.
#[derive(Debug)]
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn new(vs: nn::Path, c: i64) -> Result<Self> {
        Ok(AttnBlock {
            norm: normalize(&vs / "norm", c)?,
            q: Conv2d::new(&vs / "q", c, c, 1, 1, 0)?,
            k: Conv2d::new(&vs / "k", c, c, 1, 1, 0)?,
            v: Conv2d::new(&vs / "v", c, c, 1, 1, 0)?,
            proj_out: Conv2d::new(&vs / "proj_out", c, c, 1, 1, 0)?,
        })
    }

    fn forward(&self, x: &Tensor, opts: ModelOptions) -> Result<Tensor> {
        let (b, c, h, w) = x.size4()?;
        let hn = self.norm.forward(x)?;
        // [B, C, H, W] -> [B, 1, HW, C]: one head; SDPA scales by C^-1/2 like the original
        // and uses fused kernels on CUDA (the decoder is back-propagated every step)
        // unless attention is deterministic (`models::attention`).
        let tokens = |t: Tensor| -> Result<Tensor> {
            Ok(t.f_reshape([b, c, h * w])?
                .f_transpose(1, 2)?
                .f_unsqueeze(1)?)
        };
        let q = tokens(self.q.forward(&hn)?)?;
        let k = tokens(self.k.forward(&hn)?)?;
        let v = tokens(self.v.forward(&hn)?)?;
        let a = crate::models::attention::sdpa(&q, &k, &v, false, opts.deterministic_attention)?;
        let a = a
            .f_squeeze_dim(1)?
            .f_transpose(1, 2)?
            .f_reshape([b, c, h, w])?;
        Ok(x.f_add(&self.proj_out.forward(&a)?)?)
    }
}

/// One resolution level: residual blocks, each optionally followed by attention.
#[derive(Debug)]
struct Level {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    resample: Option<Conv2d>,
}

impl Level {
    /// The residual blocks (and their attention) of a level whose blocks go
    /// from `block_in` to `block_out` channels; leaves the level's output
    /// channels in `block_in`.
    fn blocks(
        lp: &nn::Path,
        blocks: i64,
        block_in: &mut i64,
        block_out: i64,
        attention: bool,
    ) -> Result<(Vec<ResnetBlock>, Vec<AttnBlock>)> {
        let mut res = Vec::new();
        let mut attns = Vec::new();
        for b in 0..blocks {
            res.push(ResnetBlock::new(lp / "block" / b, *block_in, block_out)?);
            *block_in = block_out;
            if attention {
                attns.push(AttnBlock::new(lp / "attn" / b, *block_in)?);
            }
        }
        Ok((res, attns))
    }

    fn run_blocks(&self, mut h: Tensor, opts: ModelOptions) -> Result<Tensor> {
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h, opts)?;
            if let Some(a) = self.attns.get(i) {
                h = a.forward(&h, opts)?;
            }
        }
        Ok(h)
    }
}

/// The middle section shared by encoder and decoder: block, attention, block.
#[derive(Debug)]
struct Mid {
    block_1: ResnetBlock,
    attn_1: AttnBlock,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(vs: nn::Path, c: i64) -> Result<Self> {
        Ok(Mid {
            block_1: ResnetBlock::new(&vs / "block_1", c, c)?,
            attn_1: AttnBlock::new(&vs / "attn_1", c)?,
            block_2: ResnetBlock::new(&vs / "block_2", c, c)?,
        })
    }

    fn forward(&self, x: &Tensor, opts: ModelOptions) -> Result<Tensor> {
        let h = self.block_1.forward(x, opts)?;
        let h = self.attn_1.forward(&h, opts)?;
        self.block_2.forward(&h, opts)
    }
}

/// taming's `Encoder` (with `double_z = false`): image → z_channels latent at 1/f size.
#[derive(Debug)]
pub(crate) struct Encoder {
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// How the blocks compute (lean convolutions, attention form).
    opts: ModelOptions,
}

impl Encoder {
    pub fn new(vs: nn::Path, cfg: &VqganConfig, opts: ModelOptions) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let conv_in = Conv2d::new(&vs / "conv_in", cfg.in_channels, cfg.ch, 3, 1, 1)?;
        let mut block_in = cfg.ch;
        let mut down = Vec::with_capacity(levels);
        for l in 0..levels {
            let lp = &vs / "down" / l;
            let block_out = cfg.ch * cfg.ch_mult[l];
            let attention = cfg.attn_levels.contains(&l);
            let (blocks, attns) =
                Level::blocks(&lp, cfg.num_res_blocks, &mut block_in, block_out, attention)?;
            let resample = (l + 1 != levels)
                .then(|| Conv2d::new(&lp / "downsample" / "conv", block_in, block_in, 3, 2, 0))
                .transpose()?;
            down.push(Level {
                blocks,
                attns,
                resample,
            });
        }
        Ok(Encoder {
            conv_in,
            down,
            mid: Mid::new(&vs / "mid", block_in)?,
            norm_out: normalize(&vs / "norm_out", block_in)?,
            conv_out: Conv2d::new(&vs / "conv_out", block_in, cfg.z_channels, 3, 1, 1)?,
            opts,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.down {
            h = level.run_blocks(h, self.opts)?;
            if let Some(c) = &level.resample {
                // No asymmetric padding in conv2d: pad right and bottom by one.
                h = c.forward(&h.f_constant_pad_nd([0, 1, 0, 1])?)?;
            }
        }
        let h = self.mid.forward(&h, self.opts)?;
        self.norm_out.swish_conv(&self.conv_out, &h, self.opts)
    }
}

/// taming's `Decoder`: z_channels latent → image at f× size.
#[derive(Debug)]
pub(crate) struct Decoder {
    conv_in: Conv2d,
    mid: Mid,
    /// Indexed by level like taming's `decoder.up` (0 = full resolution); run in reverse.
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// How the blocks compute (lean convolutions, attention form).
    opts: ModelOptions,
}

impl Decoder {
    pub fn new(vs: nn::Path, cfg: &VqganConfig, opts: ModelOptions) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
        let conv_in = Conv2d::new(&vs / "conv_in", cfg.z_channels, block_in, 3, 1, 1)?;
        let mid = Mid::new(&vs / "mid", block_in)?;
        let mut up: Vec<Option<Level>> = (0..levels).map(|_| None).collect();
        for l in (0..levels).rev() {
            let lp = &vs / "up" / l;
            let block_out = cfg.ch * cfg.ch_mult[l];
            let attention = cfg.attn_levels.contains(&l);
            let (blocks, attns) = Level::blocks(
                &lp,
                cfg.num_res_blocks + 1,
                &mut block_in,
                block_out,
                attention,
            )?;
            let resample = (l != 0)
                .then(|| Conv2d::new(&lp / "upsample" / "conv", block_in, block_in, 3, 1, 1))
                .transpose()?;
            up[l] = Some(Level {
                blocks,
                attns,
                resample,
            });
        }
        Ok(Decoder {
            conv_in,
            mid,
            up: up.into_iter().flatten().collect(),
            norm_out: normalize(&vs / "norm_out", block_in)?,
            conv_out: Conv2d::new(&vs / "conv_out", block_in, cfg.out_ch, 3, 1, 1)?,
            opts,
        })
    }

    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.conv_in.forward(z)?;
        let mut h = self.mid.forward(&h, self.opts)?;
        for level in self.up.iter().rev() {
            h = level.run_blocks(h, self.opts)?;
            if let Some(c) = &level.resample {
                let (_, _, hh, ww) = h.size4()?;
                let up = h.f_upsample_nearest2d([hh * 2, ww * 2], 2.0, 2.0)?;
                h = lean_conv3(c, &up, self.opts)?;
            }
        }
        self.norm_out.swish_conv(&self.conv_out, &h, self.opts)
    }
}

// The one test needs the shim's lean convolutions.
#[cfg(all(test, zoetrope_shim))]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// With frozen weights the decoder takes the lean convolutions, and the
    /// latent's gradient equals libtorch's path (taken while the same
    /// weights are trainable, which the lean node refuses).
    #[test]
    fn decoder_gradient_is_the_same_through_lean_convolutions() {
        let vs = nn::VarStore::new(Device::Cpu);
        let decoder = Decoder::new(
            &vs.root() / "decoder",
            &crate::models::vqgan::VqganConfig::tiny(),
            ModelOptions::default(),
        )
        .unwrap();
        let mut rng = crate::rng::Rng::new(11).unwrap();
        crate::rng::randomize(&vs, &mut rng).unwrap();
        let z = rng.randn(&[1, 32, 4, 6]).unwrap();
        let g = rng.randn(&[1, 3, 32, 48]).unwrap();
        let grad = |z: &Tensor| {
            let z = z.detach().set_requires_grad(true);
            let y = decoder.forward(&z).unwrap();
            let dz = Tensor::run_backward(&[(&y * &g).sum(Kind::Float)], &[&z], false, false);
            (y.detach(), dz[0].shallow_clone())
        };
        let calls = lean::tests::shim_calls();
        let (y_plain, dz_plain) = grad(&z);
        assert_eq!(
            lean::tests::shim_calls(),
            calls,
            "trainable weights: libtorch's path"
        );
        let mut vs = vs;
        vs.freeze();
        let (y_lean, dz_lean) = grad(&z);
        // 4 levels of 2 blocks (2 lean nodes each), the mid block's 2 blocks,
        // 3 up-sampling convolutions and norm_out → conv_out.
        assert_eq!(lean::tests::shim_calls(), calls + 2 * 8 + 2 * 2 + 3 + 1);
        let rel = |a: &Tensor, b: &Tensor| {
            (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
        };
        assert!(rel(&y_lean, &y_plain) < 1e-5, "{}", rel(&y_lean, &y_plain));
        assert!(
            rel(&dz_lean, &dz_plain) < 1e-4,
            "{}",
            rel(&dz_lean, &dz_plain)
        );
    }
}
