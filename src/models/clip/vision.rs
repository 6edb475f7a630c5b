//! CLIP's two visual towers: the Vision Transformer and the ModifiedResNet with
//! attention pooling, following OpenAI's `clip/model.py` key for key.

use tch::Tensor;

use crate::Result;

use super::layers::{
    attention, BatchNorm, LayerNorm, Linear, Params, ResidualAttentionBlock, Transformer,
};

/// `VisionTransformer`: patch embedding, class token, pre/post layer norms and a
/// projection to the joint embedding space.
#[derive(Debug)]
pub(crate) struct VisionTransformer {
    conv1: Tensor,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    patch_size: i64,
}

impl VisionTransformer {
    /// See [`Transformer::fold_quick_gelu`].
    pub fn fold_quick_gelu(&mut self) -> Result<()> {
        self.transformer.fold_quick_gelu()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &Params,
        input_resolution: i64,
        patch_size: i64,
        width: i64,
        layers: i64,
        heads: i64,
        output_dim: i64,
    ) -> Result<VisionTransformer> {
        let grid = input_resolution / patch_size;
        Ok(VisionTransformer {
            conv1: p.float("conv1.weight", &[width, 3, patch_size, patch_size])?,
            class_embedding: p.float("class_embedding", &[width])?,
            positional_embedding: p.float("positional_embedding", &[grid * grid + 1, width])?,
            ln_pre: LayerNorm::new(&p.sub("ln_pre"), width)?,
            transformer: Transformer::new(&p.sub("transformer"), width, layers, heads)?,
            ln_post: LayerNorm::new(&p.sub("ln_post"), width)?,
            proj: p.float("proj", &[width, output_dim])?,
            patch_size,
        })
    }

    /// `x` [N, 3, R, R] in the model's dtype → [N, embed_dim].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head(&self.transformer.forward(&self.stem(x)?, false)?)
    }

    /// [`forward`](Self::forward) with the residual blocks run without
    /// autograd, keeping only each block's input: see [`VitCheckpoint`].
    pub fn forward_checkpointed(&self, x: &Tensor) -> Result<(Tensor, VitCheckpoint<'_>)> {
        let stem = self.stem(x)?;
        let mut inputs = Vec::with_capacity(self.transformer.blocks().len());
        let last = tch::no_grad(|| -> Result<Tensor> {
            let mut h = stem.f_detach()?;
            for b in self.transformer.blocks() {
                inputs.push(h.shallow_clone());
                h = b.forward(&h, false)?;
            }
            Ok(h)
        })?
        .f_set_requires_grad(true)?;
        let out = self.head(&last)?;
        Ok((
            out,
            VitCheckpoint {
                blocks: self.transformer.blocks(),
                stem,
                inputs,
                last,
            },
        ))
    }

    /// Patch embedding, class token, positions and `ln_pre`: [N, 1 + grid², width].
    fn stem(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.patch_size;
        let x = x.f_conv2d(&self.conv1, None::<Tensor>, [p, p], [0, 0], [1, 1], 1)?;
        let (n, width) = batch_and_channels(&x)?;
        let x = x.f_reshape([n, width, -1])?.f_permute([0, 2, 1])?;
        let cls = self
            .class_embedding
            .f_to_kind(x.f_kind()?)?
            .f_reshape([1, 1, width])?
            .f_expand([n, 1, width], true)?;
        let kind = x.f_kind()?;
        let x = Tensor::f_cat(&[cls, x], 1)?.f_add(&self.positional_embedding.f_to_kind(kind)?)?;
        self.ln_pre.forward(&x)
    }

    /// `ln_post` of the class token and the projection: [N, embed_dim].
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .ln_post
            .forward(&x.f_select(1, 0)?)?
            .f_matmul(&self.proj)?)
    }
}

/// The batch and channel sizes of an [N, C, …] tensor.
fn batch_and_channels(x: &Tensor) -> Result<(i64, i64)> {
    match x.size()[..] {
        [n, c, ..] => Ok((n, c)),
        ref s => Err(crate::Error::internal(format!(
            "CLIP wants a batch of feature maps [N, C, …], got {s:?}"
        ))),
    }
}

/// What a checkpointed ViT forward keeps for its backward pass: the input of
/// each residual block (one `[N, tokens, width]` tensor) instead of every
/// activation of every block (about ten such tensors per block with frozen
/// weights). [`VitCheckpoint::backward`] recomputes one block at a time.
///
/// The embeddings returned with it are attached to the last block's output
/// (a leaf), not to the image: after the losses' backward pass has reached
/// that leaf, `backward` carries its gradient through the blocks and the
/// stem into the image.
pub struct VitCheckpoint<'a> {
    blocks: &'a [ResidualAttentionBlock],
    /// The stem's output, attached to the image.
    stem: Tensor,
    /// Each block's input (detached).
    inputs: Vec<Tensor>,
    /// The last block's output: the leaf the head is attached to.
    last: Tensor,
}

impl VitCheckpoint<'_> {
    /// Back-propagates the gradient that reached the last block's output
    /// through every block (each recomputed from its kept input) and the
    /// stem; the image's gradient accumulates as `backward()` accumulates
    /// it. Nothing to do when no loss used these embeddings.
    pub fn backward(&self) -> Result<()> {
        let mut grad = self.last.f_grad()?;
        if !grad.defined() {
            return Ok(());
        }
        for (block, input) in self.blocks.iter().zip(&self.inputs).rev() {
            let x = input.f_detach()?.f_set_requires_grad(true)?;
            let y = block.forward(&x, false)?;
            // d/dx Σ(y ⊙ grad) is the vector-Jacobian product for `grad`.
            let vjp = y.f_mul(&grad)?.f_sum(tch::Kind::Float)?;
            grad = Tensor::f_run_backward(&[vjp], &[&x], false, false)?
                .pop()
                .ok_or_else(|| {
                    crate::Error::internal("autograd returned no gradient for a ViT block")
                })?;
        }
        Ok(self
            .stem
            .f_mul(&grad)?
            .f_sum(tch::Kind::Float)?
            .f_backward()?)
    }
}

/// ModifiedResNet `Bottleneck`: 1×1, 3×3, avg-pool (stride > 1), 1×1, with an
/// avg-pool + 1×1 conv + BN shortcut when the shape changes.
#[derive(Debug)]
struct Bottleneck {
    conv1: Tensor,
    bn1: BatchNorm,
    conv2: Tensor,
    bn2: BatchNorm,
    conv3: Tensor,
    bn3: BatchNorm,
    downsample: Option<(Tensor, BatchNorm)>,
    stride: i64,
}

const EXPANSION: i64 = 4;

fn conv(x: &Tensor, w: &Tensor, padding: i64, stride: i64) -> Result<Tensor> {
    Ok(x.f_conv2d(
        w,
        None::<Tensor>,
        [stride, stride],
        [padding, padding],
        [1, 1],
        1,
    )?)
}

fn avg_pool(x: &Tensor, k: i64) -> Result<Tensor> {
    Ok(x.f_avg_pool2d([k, k], [k, k], [0, 0], false, true, None)?)
}

impl Bottleneck {
    fn new(p: &Params, inplanes: i64, planes: i64, stride: i64) -> Result<Bottleneck> {
        let out = planes * EXPANSION;
        let downsample = if stride > 1 || inplanes != out {
            let d = p.sub("downsample");
            Some((
                d.float("0.weight", &[out, inplanes, 1, 1])?,
                BatchNorm::new(&d.sub("1"), out)?,
            ))
        } else {
            None
        };
        Ok(Bottleneck {
            conv1: p.float("conv1.weight", &[planes, inplanes, 1, 1])?,
            bn1: BatchNorm::new(&p.sub("bn1"), planes)?,
            conv2: p.float("conv2.weight", &[planes, planes, 3, 3])?,
            bn2: BatchNorm::new(&p.sub("bn2"), planes)?,
            conv3: p.float("conv3.weight", &[out, planes, 1, 1])?,
            bn3: BatchNorm::new(&p.sub("bn3"), out)?,
            downsample,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.bn1.forward(&conv(x, &self.conv1, 0, 1)?)?.f_relu()?;
        let mut out = self
            .bn2
            .forward(&conv(&out, &self.conv2, 1, 1)?)?
            .f_relu()?;
        if self.stride > 1 {
            out = avg_pool(&out, self.stride)?;
        }
        let out = self.bn3.forward(&conv(&out, &self.conv3, 0, 1)?)?;
        let identity = match &self.downsample {
            Some((w, bn)) => {
                let x = if self.stride > 1 {
                    avg_pool(x, self.stride)?
                } else {
                    x.shallow_clone()
                };
                bn.forward(&conv(&x, w, 0, 1)?)?
            }
            None => x.shallow_clone(),
        };
        Ok(out.f_add(&identity)?.f_relu()?)
    }
}

/// `AttentionPool2d`: one query (the mean of the feature map) attends over all
/// positions; `c_proj` maps to the embedding.
#[derive(Debug)]
struct AttentionPool2d {
    positional_embedding: Tensor,
    k_proj: Linear,
    q_proj: Linear,
    v_proj: Linear,
    c_proj: Linear,
    heads: i64,
    /// The explicit attention form ([`crate::models::attention`]).
    deterministic: bool,
}

impl AttentionPool2d {
    fn new(
        p: &Params,
        spacial: i64,
        embed: i64,
        heads: i64,
        output: i64,
    ) -> Result<AttentionPool2d> {
        Ok(AttentionPool2d {
            positional_embedding: p
                .float("positional_embedding", &[spacial * spacial + 1, embed])?,
            k_proj: Linear::new(&p.sub("k_proj"), embed, embed)?,
            q_proj: Linear::new(&p.sub("q_proj"), embed, embed)?,
            v_proj: Linear::new(&p.sub("v_proj"), embed, embed)?,
            c_proj: Linear::new(&p.sub("c_proj"), embed, output)?,
            heads,
            deterministic: p.options.deterministic_attention,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c) = batch_and_channels(x)?;
        let x = x.f_reshape([n, c, -1])?.f_permute([0, 2, 1])?; // [N, HW, C]
        let mean = x.f_mean_dim(1, true, None)?;
        let kind = x.f_kind()?;
        let x = Tensor::f_cat(&[mean, x], 1)?.f_add(&self.positional_embedding.f_to_kind(kind)?)?;
        let q = self.q_proj.forward(&x.f_narrow(1, 0, 1)?)?;
        let k = self.k_proj.forward(&x)?;
        let v = self.v_proj.forward(&x)?;
        let out = attention(&q, &k, &v, self.heads, false, self.deterministic)?;
        Ok(self.c_proj.forward(&out)?.f_squeeze_dim(1)?)
    }
}

/// `ModifiedResNet`: three-conv stem with avg-pool, four Bottleneck stages with
/// anti-aliased (avg-pool) striding, attention pooling.
#[derive(Debug)]
pub(crate) struct ModifiedResNet {
    stem: [(Tensor, BatchNorm, i64); 3],
    layers: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool2d,
}

impl ModifiedResNet {
    pub fn new(
        p: &Params,
        layers: [i64; 4],
        output_dim: i64,
        heads: i64,
        input_resolution: i64,
        width: i64,
    ) -> Result<ModifiedResNet> {
        let half = width / 2;
        let stem = [
            (
                p.float("conv1.weight", &[half, 3, 3, 3])?,
                BatchNorm::new(&p.sub("bn1"), half)?,
                2,
            ),
            (
                p.float("conv2.weight", &[half, half, 3, 3])?,
                BatchNorm::new(&p.sub("bn2"), half)?,
                1,
            ),
            (
                p.float("conv3.weight", &[width, half, 3, 3])?,
                BatchNorm::new(&p.sub("bn3"), width)?,
                1,
            ),
        ];
        let mut inplanes = width;
        let mut stages = Vec::new();
        for (i, &blocks) in layers.iter().enumerate() {
            let planes = width << i;
            let stride = if i == 0 { 1 } else { 2 };
            let lp = p.sub(format!("layer{}", i + 1));
            let mut stage = vec![Bottleneck::new(&lp.sub(0), inplanes, planes, stride)?];
            inplanes = planes * EXPANSION;
            for b in 1..blocks {
                stage.push(Bottleneck::new(&lp.sub(b), inplanes, planes, 1)?);
            }
            stages.push(stage);
        }
        let embed = width * 32;
        let attnpool = AttentionPool2d::new(
            &p.sub("attnpool"),
            input_resolution / 32,
            embed,
            heads,
            output_dim,
        )?;
        Ok(ModifiedResNet {
            stem,
            layers: stages,
            attnpool,
        })
    }

    /// `x` [N, 3, R, R] in the model's dtype → [N, embed_dim].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for (w, bn, stride) in &self.stem {
            x = bn.forward(&conv(&x, w, 1, *stride)?)?.f_relu()?;
        }
        x = avg_pool(&x, 2)?;
        for stage in &self.layers {
            for block in stage {
                x = block.forward(&x)?;
            }
        }
        self.attnpool.forward(&x)
    }
}
