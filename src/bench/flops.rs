//! Analytic FLOP counts of one benchmark step, for the TFLOP/s reported.

use serde::Serialize;

use crate::bench::spec::BenchSpec;
use crate::models::clip::{ClipConfig, VisionConfig};
use crate::models::vqgan::VqganConfig;

/// Analytic floating-point operations of one step (multiply-add = 2 FLOPs),
/// counting the matrix products and convolutions (which are > 99 % of the
/// arithmetic; norms, activations and element-wise ops are left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlopCount {
    /// Forward pass of every perceptor's image tower on its cutouts.
    pub perceptors_forward: f64,
    /// Forward pass of the VQGAN decoder (post-quant conv included).
    pub decoder_forward: f64,
    /// Cutout resampling (two matrix products per crop and channel), forward.
    pub cutouts_forward: f64,
    /// Nearest-code search (`z · codebookᵀ`), forward only (no gradient).
    pub quantize: f64,
    /// The backward pass. The weights are frozen, so a weight layer's backward
    /// computes only the gradient of its input (the same FLOPs as its forward),
    /// while a product of two activations (attention's `QKᵀ` and `A·V`,
    /// the cutout matrices' image side) needs the gradient of both of its
    /// operands' activation side: for those the backward costs twice the
    /// forward. (This is why the total is not the usual 3 × forward of
    /// training, where weight gradients are computed too.)
    pub backward: f64,
    /// Everything: forward + backward + quantise.
    pub total: f64,
}

/// FLOPs of a convolution (`k×k`, `cin → cout`) producing `hw` output pixels per image.
fn conv(n: f64, cin: i64, cout: i64, k: i64, hw: f64) -> f64 {
    2.0 * n * (cin * cout * k * k) as f64 * hw
}

/// `(weight FLOPs, activation×activation FLOPs)` of CLIP's visual tower on `n` images.
///
/// ViT (`T = (R/P)² + 1` tokens, width `W`, `L` layers): patch embedding
/// `2·n·(R/P)²·3P²·W`; per layer the QKV, output and MLP projections
/// `2·n·T·12W²` and the attention products `4·n·T²·W`; the final projection
/// of the class token `2·n·W·E`.
///
/// ModifiedResNet: the three stem convolutions, then per Bottleneck
/// `1×1 (c_in→p)`, `3×3 (p→p)` at the input resolution, `1×1 (p→4p)` and the
/// down-sampling `1×1 (c_in→4p)` at the output resolution; the attention pool
/// projects all `T = (R/32)² + 1` tokens to keys and values, the class token
/// to a query, and the output to `E`.
pub fn clip_visual_flops(config: &ClipConfig, n: f64) -> (f64, f64) {
    let r = config.image_resolution;
    match &config.vision {
        VisionConfig::ViT {
            layers,
            width,
            patch_size,
            ..
        } => {
            let g = (r / patch_size) as f64;
            let t = g * g + 1.0;
            let w = *width as f64;
            let patch = conv(n, 3, *width, *patch_size, g * g);
            let per_layer_weights = 2.0 * n * t * 12.0 * w * w;
            let per_layer_attn = 4.0 * n * t * t * w;
            let proj = 2.0 * n * w * config.embed_dim as f64;
            (
                patch + *layers as f64 * per_layer_weights + proj,
                *layers as f64 * per_layer_attn,
            )
        }
        VisionConfig::ResNet { layers, width, .. } => {
            let sq = |side: i64| (side * side) as f64;
            let half = width / 2;
            let mut f = conv(n, 3, half, 3, sq(r / 2))
                + conv(n, half, half, 3, sq(r / 2))
                + conv(n, half, *width, 3, sq(r / 2));
            let mut side = r / 4;
            let mut inplanes = *width;
            for (stage, &blocks) in layers.iter().enumerate() {
                let planes = width << stage;
                for b in 0..blocks {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    let out_side = side / stride;
                    f += conv(n, inplanes, planes, 1, sq(side));
                    f += conv(n, planes, planes, 3, sq(side));
                    f += conv(n, planes, planes * 4, 1, sq(out_side));
                    if stride > 1 || inplanes != planes * 4 {
                        f += conv(n, inplanes, planes * 4, 1, sq(out_side));
                    }
                    inplanes = planes * 4;
                    side = out_side;
                }
            }
            let c = (width * 32) as f64;
            let t = sq(side) + 1.0;
            let e = config.embed_dim as f64;
            f += 2.0 * n * (2.0 * t * c * c + c * c + c * e);
            (f, 4.0 * n * t * c)
        }
    }
}

/// FLOPs of a taming `ResnetBlock` (`cin → cout`) at `hw` pixels.
fn resnet_block(cin: i64, cout: i64, hw: f64) -> f64 {
    conv(1.0, cin, cout, 3, hw)
        + conv(1.0, cout, cout, 3, hw)
        + if cin != cout {
            conv(1.0, cin, cout, 1, hw)
        } else {
            0.0
        }
}

/// `(weight FLOPs, activation×activation FLOPs)` of a taming `AttnBlock` of `c` channels at `hw` pixels:
/// q, k, v and the output projection (1×1 convs), and the two `hw × hw` products.
fn attn_block(c: i64, hw: f64) -> (f64, f64) {
    (4.0 * conv(1.0, c, c, 1, hw), 4.0 * hw * hw * c as f64)
}

/// `(weight FLOPs, activation×activation FLOPs)` of the VQGAN decoder on a
/// `lh × lw` latent: post-quant 1×1 conv, `conv_in`, the middle (block,
/// attention, block), per level from the lowest resolution up
/// `num_res_blocks + 1` blocks (each followed by attention at the attention
/// levels) and, except at full resolution, nearest ×2 then a 3×3 conv, and
/// `conv_out` at full resolution.
pub fn decoder_flops(cfg: &VqganConfig, lh: i64, lw: i64) -> (f64, f64) {
    let levels = cfg.ch_mult.len();
    let mut hw = (lh * lw) as f64;
    let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
    let mut w = conv(1.0, cfg.embed_dim, cfg.z_channels, 1, hw)
        + conv(1.0, cfg.z_channels, block_in, 3, hw)
        + 2.0 * resnet_block(block_in, block_in, hw);
    let (aw, aa) = attn_block(block_in, hw);
    w += aw;
    let mut a = aa;
    for level in (0..levels).rev() {
        let block_out = cfg.ch * cfg.ch_mult[level];
        for _ in 0..=cfg.num_res_blocks {
            w += resnet_block(block_in, block_out, hw);
            block_in = block_out;
            if cfg.attn_levels.contains(&level) {
                let (aw, aa) = attn_block(block_in, hw);
                w += aw;
                a += aa;
            }
        }
        if level != 0 {
            hw *= 4.0;
            w += conv(1.0, block_in, block_in, 3, hw);
        }
    }
    w += conv(1.0, block_in, cfg.out_ch, 3, hw);
    (w, a)
}

/// The FLOPs of one step of `spec` (see [`FlopCount`] for what is counted).
pub fn flops_per_step(spec: &BenchSpec) -> FlopCount {
    let n = spec.cutouts as f64;
    let f = spec.vqgan.factor();
    let (lh, lw) = (spec.height / f, spec.width / f);
    let (dw, da) = decoder_flops(&spec.vqgan, lh, lw);
    let mut pw = 0.0;
    let mut pa = 0.0;
    let mut cut = 0.0;
    for (_, c) in &spec.perceptors {
        let (w, a) = clip_visual_flops(c, n);
        pw += w;
        pa += a;
        // A_y [r × H'] · img [H' × W'] · A_xᵀ [W' × r] per crop and channel
        // (H', W' the image padded by the cutout border, counted unpadded here).
        let r = c.image_resolution as f64;
        let (h, wd) = (spec.height as f64, spec.width as f64);
        cut += n * 3.0 * (2.0 * r * h * wd + 2.0 * r * wd * r);
    }
    let quantize = 2.0 * (lh * lw * spec.vqgan.n_embed * spec.vqgan.embed_dim) as f64;
    // Backward: weight layers once (input gradient only), activation products
    // twice; the cutout products' gradient reaches the image only (one side).
    let backward = pw + dw + 2.0 * (pa + da) + cut;
    let perceptors_forward = pw + pa;
    let decoder_forward = dw + da;
    FlopCount {
        perceptors_forward,
        decoder_forward,
        cutouts_forward: cut,
        quantize,
        backward,
        total: perceptors_forward + decoder_forward + cut + quantize + backward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::spec::BenchSpec;

    #[test]
    fn vit_b32_forward_flops_match_the_known_figure() {
        // ViT-B/32 image tower: 4.41 GMACs per 224 px image (timm's
        // vit_base_patch32_224 figure), i.e. 8.8 GFLOPs.
        let (w, a) = clip_visual_flops(&ClipConfig::vit_b32(), 1.0);
        let g = (w + a) / 1e9;
        assert!((8.7..8.95).contains(&g), "{g}");
    }

    #[test]
    fn rn50_forward_flops_match_the_known_figure() {
        // CLIP's ModifiedResNet-50 at 224 px: 5.4 GMACs in its convolutions
        // (open_clip's profile; more than torchvision's ResNet-50, 4.1 GMACs,
        // from the wider three-conv stem) plus 0.4 GMACs in the attention
        // pool's projections: about 11.6 GFLOPs.
        let (w, a) = clip_visual_flops(&ClipConfig::rn50(), 1.0);
        let g = (w + a) / 1e9;
        assert!((11.3..11.9).contains(&g), "{g}");
    }

    #[test]
    fn configurations_have_the_issue_sizes() {
        let a = BenchSpec::named("a", false).unwrap();
        assert_eq!((a.width, a.height, a.cutouts), (256, 128, 60));
        assert_eq!(a.vqgan.n_embed, 16384);
        assert_eq!(a.vqgan.factor(), 16);
        let c = BenchSpec::named("C", false).unwrap();
        assert_eq!((c.width, c.height, c.cutouts), (512, 512, 64));
        let names: Vec<_> = c.perceptors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ViT-B/32", "RN50"]);
        let e = BenchSpec::named("d", false).unwrap_err();
        assert!(e.message.contains("a (the seed scene"), "{e}");
        // More pixels, more work; a second perceptor adds its tower.
        let b = BenchSpec::named("b", false).unwrap();
        let (fa, fb, fc) = (
            flops_per_step(&a).total,
            flops_per_step(&b).total,
            flops_per_step(&c).total,
        );
        assert!(fa < fb && fb < fc, "{fa} {fb} {fc}");
    }

    #[test]
    fn seed_scene_count_agrees_with_torch_flop_counter() {
        // `benches/reference/notebook_loop.py --config a --steps 1 --device cpu`
        // measured 1 301 817 589 760 FLOPs for one step of the same models
        // with torch.utils.flop_counter.FlopCounterMode (2026-11-23). The
        // reference pools its cutouts (no FLOPs counted), so compare without
        // zoetrope's matrix resampling; the rest agrees to about 1 %.
        let f = flops_per_step(&BenchSpec::named("a", false).unwrap());
        let ours = f.total - 2.0 * f.cutouts_forward;
        let measured = 1_301_817_589_760.0;
        let rel = (ours - measured).abs() / measured;
        assert!(rel < 0.02, "{ours} vs {measured}: {rel}");
    }
}
