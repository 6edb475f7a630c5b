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

use tch::nn::{self, Module};
use tch::Tensor;

use super::config::VqganConfig;
use crate::models::lean;

fn conv(vs: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        vs,
        i,
        o,
        k,
        nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        },
    )
}

fn normalize(vs: nn::Path, c: i64) -> GroupNorm {
    GroupNorm {
        weight: vs.ones("weight", &[c]),
        bias: vs.zeros("bias", &[c]),
    }
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
    fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(GROUPS, Some(&self.weight), Some(&self.bias), EPS, true)
    }

    /// `conv(swish(norm(x)))` for a 3×3, stride 1, padding 1 `conv`: as one
    /// lean autograd node where it applies ([`crate::models::lean`]: the
    /// backward pass then keeps `x` alone instead of three maps).
    fn swish_conv(&self, conv: &nn::Conv2D, x: &Tensor) -> Tensor {
        let norm = lean::Norm {
            weight: &self.weight,
            bias: &self.bias,
            groups: GROUPS,
            eps: EPS,
        };
        if let Some(y) = lean::conv(x, Some(norm), same3x3(conv)) {
            return y;
        }
        conv.forward(&swish(&self.forward(x)))
    }
}

/// A 3×3, stride 1, padding 1 convolution that keeps nothing for the
/// backward pass where it applies ([`crate::models::lean`]); the decoder's
/// up-sampling convolutions, whose input is 4× the map before it.
fn lean_conv3(conv: &nn::Conv2D, x: &Tensor) -> Tensor {
    lean::conv(x, None, same3x3(conv)).unwrap_or_else(|| conv.forward(x))
}

/// A 3×3, stride 1, padding 1 `conv` for [`lean::conv`].
fn same3x3(conv: &nn::Conv2D) -> lean::Conv<'_> {
    lean::Conv {
        weight: &conv.ws,
        bias: conv.bs.as_ref(),
        stride: 1,
        padding: 1,
    }
}

/// swish, as taming's `nonlinearity`.
fn swish(x: &Tensor) -> Tensor {
    x.silu()
}

/// `ResnetBlock` without the time embedding (temb_channels = 0 in VQGANs).
#[derive(Debug)]
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: nn::Conv2D,
    norm2: GroupNorm,
    conv2: nn::Conv2D,
    nin_shortcut: Option<nn::Conv2D>,
}

impl ResnetBlock {
    fn new(vs: nn::Path, i: i64, o: i64) -> Self {
        ResnetBlock {
            norm1: normalize(&vs / "norm1", i),
            conv1: conv(&vs / "conv1", i, o, 3, 1, 1),
            norm2: normalize(&vs / "norm2", o),
            conv2: conv(&vs / "conv2", o, o, 3, 1, 1),
            nin_shortcut: (i != o).then(|| conv(&vs / "nin_shortcut", i, o, 1, 1, 0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.norm1.swish_conv(&self.conv1, x);
        let h = self.norm2.swish_conv(&self.conv2, &h);
        match &self.nin_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// `AttnBlock`: single-head self-attention over all spatial positions.
#[derive(Debug)]
struct AttnBlock {
    norm: GroupNorm,
    q: nn::Conv2D,
    k: nn::Conv2D,
    v: nn::Conv2D,
    proj_out: nn::Conv2D,
}

impl AttnBlock {
    fn new(vs: nn::Path, c: i64) -> Self {
        AttnBlock {
            norm: normalize(&vs / "norm", c),
            q: conv(&vs / "q", c, c, 1, 1, 0),
            k: conv(&vs / "k", c, c, 1, 1, 0),
            v: conv(&vs / "v", c, c, 1, 1, 0),
            proj_out: conv(&vs / "proj_out", c, c, 1, 1, 0),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("VQGAN attention input is 4-D");
        let hn = self.norm.forward(x);
        // [B, C, H, W] -> [B, 1, HW, C]: one head; SDPA scales by C^-1/2 like the original
        // and uses fused kernels on CUDA (the decoder is back-propagated every step)
        // unless attention is deterministic (`models::attention`).
        let tokens = |t: Tensor| t.reshape([b, c, h * w]).transpose(1, 2).unsqueeze(1);
        let q = tokens(self.q.forward(&hn));
        let k = tokens(self.k.forward(&hn));
        let v = tokens(self.v.forward(&hn));
        // The VQGAN's forwards do not return Result yet: a libtorch error panics
        // here as it did inside `sdpa` before.
        let a = crate::models::attention::sdpa(&q, &k, &v, false).expect("VQGAN attention");
        let a = a.squeeze_dim(1).transpose(1, 2).reshape([b, c, h, w]);
        x + self.proj_out.forward(&a)
    }
}

/// One resolution level: residual blocks, each optionally followed by attention.
#[derive(Debug)]
struct Level {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    resample: Option<nn::Conv2D>,
}

impl Level {
    fn run_blocks(&self, mut h: Tensor) -> Tensor {
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h);
            if let Some(a) = self.attns.get(i) {
                h = a.forward(&h);
            }
        }
        h
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
    fn new(vs: nn::Path, c: i64) -> Self {
        Mid {
            block_1: ResnetBlock::new(&vs / "block_1", c, c),
            attn_1: AttnBlock::new(&vs / "attn_1", c),
            block_2: ResnetBlock::new(&vs / "block_2", c, c),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.block_2
            .forward(&self.attn_1.forward(&self.block_1.forward(x)))
    }
}

/// taming's `Encoder` (with `double_z = false`): image → z_channels latent at 1/f size.
#[derive(Debug)]
pub(crate) struct Encoder {
    conv_in: nn::Conv2D,
    down: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    pub fn new(vs: nn::Path, cfg: &VqganConfig) -> Self {
        let levels = cfg.ch_mult.len();
        let conv_in = conv(&vs / "conv_in", cfg.in_channels, cfg.ch, 3, 1, 1);
        let mut block_in = cfg.ch;
        let mut down = Vec::with_capacity(levels);
        for l in 0..levels {
            let lp = &vs / "down" / l;
            let block_out = cfg.ch * cfg.ch_mult[l];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for b in 0..cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(&lp / "block" / b, block_in, block_out));
                block_in = block_out;
                if cfg.attn_levels.contains(&l) {
                    attns.push(AttnBlock::new(&lp / "attn" / b, block_in));
                }
            }
            let resample = (l + 1 != levels)
                .then(|| conv(&lp / "downsample" / "conv", block_in, block_in, 3, 2, 0));
            down.push(Level {
                blocks,
                attns,
                resample,
            });
        }
        Encoder {
            conv_in,
            down,
            mid: Mid::new(&vs / "mid", block_in),
            norm_out: normalize(&vs / "norm_out", block_in),
            conv_out: conv(&vs / "conv_out", block_in, cfg.z_channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.conv_in.forward(x);
        for level in &self.down {
            h = level.run_blocks(h);
            if let Some(c) = &level.resample {
                // No asymmetric padding in conv2d: pad right and bottom by one.
                h = c.forward(&h.constant_pad_nd([0, 1, 0, 1]));
            }
        }
        let h = self.mid.forward(&h);
        self.norm_out.swish_conv(&self.conv_out, &h)
    }
}

/// taming's `Decoder`: z_channels latent → image at f× size.
#[derive(Debug)]
pub(crate) struct Decoder {
    conv_in: nn::Conv2D,
    mid: Mid,
    /// Indexed by level like taming's `decoder.up` (0 = full resolution); run in reverse.
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    pub fn new(vs: nn::Path, cfg: &VqganConfig) -> Self {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
        let conv_in = conv(&vs / "conv_in", cfg.z_channels, block_in, 3, 1, 1);
        let mid = Mid::new(&vs / "mid", block_in);
        let mut up: Vec<Option<Level>> = (0..levels).map(|_| None).collect();
        for l in (0..levels).rev() {
            let lp = &vs / "up" / l;
            let block_out = cfg.ch * cfg.ch_mult[l];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for b in 0..=cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(&lp / "block" / b, block_in, block_out));
                block_in = block_out;
                if cfg.attn_levels.contains(&l) {
                    attns.push(AttnBlock::new(&lp / "attn" / b, block_in));
                }
            }
            let resample =
                (l != 0).then(|| conv(&lp / "upsample" / "conv", block_in, block_in, 3, 1, 1));
            up[l] = Some(Level {
                blocks,
                attns,
                resample,
            });
        }
        Decoder {
            conv_in,
            mid,
            up: up.into_iter().flatten().collect(),
            norm_out: normalize(&vs / "norm_out", block_in),
            conv_out: conv(&vs / "conv_out", block_in, cfg.out_ch, 3, 1, 1),
        }
    }

    pub fn forward(&self, z: &Tensor) -> Tensor {
        let h = self.conv_in.forward(z);
        let mut h = self.mid.forward(&h);
        for level in self.up.iter().rev() {
            h = level.run_blocks(h);
            if let Some(c) = &level.resample {
                let (_, _, hh, ww) = h.size4().expect("VQGAN decoder activations are 4-D");
                h = lean_conv3(c, &h.upsample_nearest2d([hh * 2, ww * 2], 2.0, 2.0));
            }
        }
        self.norm_out.swish_conv(&self.conv_out, &h)
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
            &crate::models::tiny::tiny_vqgan_config(),
        );
        let mut rng = crate::rng::Rng::new(11).unwrap();
        crate::rng::randomize(&vs, &mut rng).unwrap();
        let z = rng.randn(&[1, 32, 4, 6]).unwrap();
        let g = rng.randn(&[1, 3, 32, 48]).unwrap();
        let grad = |z: &Tensor| {
            let z = z.detach().set_requires_grad(true);
            let y = decoder.forward(&z);
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
