//! Building blocks shared by CLIP's towers: parameters, linear layers, layer norm,
//! batch norm, multi-head attention and the residual attention transformer.
//!
//! Parameters are registered under the exact names of OpenAI's `clip/model.py` so
//! that a converted official state dict loads without renaming.

use tch::{nn, Device, Kind, Tensor};

use crate::models::ModelOptions;
use crate::Result;

/// Where parameters are registered, and whether to allocate them.
///
/// In shape-only mode every parameter is a zero-stride expanded scalar: the
/// variable store then lists the official keys and shapes of even the largest
/// checkpoints (RN50x64, ViT-L/14) without allocating their memory.
#[derive(Clone)]
pub(crate) struct Params<'a> {
    pub path: nn::Path<'a>,
    pub shape_only: bool,
    /// How the layers built from here compute (their attention form).
    pub options: ModelOptions,
}

impl<'a> Params<'a> {
    pub fn sub(&self, name: impl ToString) -> Params<'a> {
        Params {
            path: self.path.sub(name.to_string()),
            shape_only: self.shape_only,
            options: self.options,
        }
    }

    /// A zero tensor of `shape`; an allocation libtorch refuses (out of
    /// memory, an impossible size) is an error, not a panic.
    fn make(&self, shape: &[i64], kind: Kind) -> Result<Tensor> {
        Ok(if self.shape_only {
            Tensor::f_zeros([], (kind, Device::Cpu))?.f_expand(shape, true)?
        } else {
            Tensor::f_zeros(shape, (kind, self.path.device()))?
        })
    }

    /// The path and leaf name for a possibly dotted name (`conv1.weight`).
    fn leaf<'n>(&self, name: &'n str) -> (nn::Path<'a>, &'n str) {
        match name.rsplit_once('.') {
            Some((dir, leaf)) => (
                dir.split('.').fold(self.path.clone(), |p, s| p.sub(s)),
                leaf,
            ),
            None => (self.path.clone(), name),
        }
    }

    /// A floating-point parameter in the store's kind. Parameters are not
    /// trainable: guidance differentiates with respect to the image, never the
    /// perceptor's weights, so no gradient buffers are kept for them.
    pub fn float(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let kind = self.path.kind();
        let (path, leaf) = self.leaf(name);
        Ok(path.add(leaf, self.make(shape, kind)?, false))
    }

    /// An integer buffer (BatchNorm's `num_batches_tracked`), always int64.
    pub fn int64(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let (path, leaf) = self.leaf(name);
        Ok(path.add(leaf, self.make(shape, Kind::Int64)?, false))
    }
}

/// `nn.Linear`: `weight` [out, in] and `bias` [out].
#[derive(Debug)]
pub(crate) struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(p: &Params, input: i64, output: i64) -> Result<Linear> {
        Ok(Linear {
            weight: p.float("weight", &[output, input])?,
            bias: p.float("bias", &[output])?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }

    fn tensors(&self) -> [&Tensor; 2] {
        [&self.weight, &self.bias]
    }
}

/// CLIP's `LayerNorm`: computed in fp32 whatever the model's dtype, result cast
/// back, exactly like the official subclass (keeps bf16/fp16 models stable).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: &Params, dim: i64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: p.float("weight", &[dim])?,
            bias: p.float("bias", &[dim])?,
            dim,
        })
    }

    pub fn tensors(&self) -> [&Tensor; 2] {
        [&self.weight, &self.bias]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let kind = x.f_kind()?;
        Ok(if kind == Kind::Float {
            x.f_layer_norm([self.dim], Some(&self.weight), Some(&self.bias), 1e-5, true)?
        } else if kind == Kind::BFloat16 {
            // bf16 has float32's range, so the cast the official subclass
            // makes for fp16 is not needed: libtorch's bf16 kernel already
            // accumulates its statistics in float32. Skipping the casts saves
            // two passes and keeps a bf16 (not a float32) copy of the input
            // for the backward pass.
            x.f_layer_norm(
                [self.dim],
                Some(self.weight.f_to_kind(kind)?),
                Some(self.bias.f_to_kind(kind)?),
                1e-5,
                true,
            )?
        } else {
            x.f_to_kind(Kind::Float)?
                .f_layer_norm(
                    [self.dim],
                    Some(self.weight.f_to_kind(Kind::Float)?),
                    Some(self.bias.f_to_kind(Kind::Float)?),
                    1e-5,
                    true,
                )?
                .f_to_kind(kind)?
        })
    }
}

/// `nn.BatchNorm2d` in eval mode (running statistics). `num_batches_tracked` is
/// registered so the key list equals the official state dict; it is never read.
#[derive(Debug)]
pub(crate) struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm {
    pub fn new(p: &Params, dim: i64) -> Result<BatchNorm> {
        let bn = BatchNorm {
            weight: p.float("weight", &[dim])?,
            bias: p.float("bias", &[dim])?,
            running_mean: p.float("running_mean", &[dim])?,
            running_var: p.float("running_var", &[dim])?,
        };
        let _ = p.int64("num_batches_tracked", &[])?;
        Ok(bn)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.1,
            1e-5,
            true,
        )?)
    }
}

/// Scaled dot-product attention over heads.
///
/// `q` [N, Lq, D], `k`/`v` [N, L, D] (already projected) → [N, Lq, D].
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: i64,
    causal: bool,
    deterministic: bool,
) -> Result<Tensor> {
    let (qs, ks) = (q.size(), k.size());
    let (n, lq, d, l) = match (qs.as_slice(), ks.as_slice()) {
        (&[n, lq, d], &[_, l, _]) if heads > 0 => (n, lq, d, l),
        _ => {
            return Err(crate::Error::internal(format!(
                "attention wants [N, L, D] queries and keys and at least one head, \
                 got {qs:?}, {ks:?} and {heads} heads"
            )))
        }
    };
    let dh = d / heads;
    let split = |t: &Tensor, len: i64| -> Result<Tensor> {
        Ok(t.f_reshape([n, len, heads, dh])?.f_transpose(1, 2)?)
    };
    let out = crate::models::attention::sdpa(
        &split(q, lq)?,
        &split(k, l)?,
        &split(v, l)?,
        causal,
        deterministic,
    )?;
    Ok(out.f_transpose(1, 2)?.f_reshape([n, lq, d])?)
}

/// `nn.MultiheadAttention` as CLIP uses it (self-attention, packed
/// `in_proj_weight`/`in_proj_bias`, `out_proj`), batch-first.
#[derive(Debug)]
pub(crate) struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Linear,
    heads: i64,
    /// The explicit attention form ([`crate::models::attention`]).
    deterministic: bool,
}

impl MultiheadAttention {
    pub fn new(p: &Params, width: i64, heads: i64) -> Result<MultiheadAttention> {
        Ok(MultiheadAttention {
            in_proj_weight: p.float("in_proj_weight", &[3 * width, width])?,
            in_proj_bias: p.float("in_proj_bias", &[3 * width])?,
            out_proj: Linear::new(&p.sub("out_proj"), width, width)?,
            heads,
            deterministic: p.options.deterministic_attention,
        })
    }

    /// `x` [N, L, D]; `causal` masks attention to later positions (the text tower).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let qkv = x.f_linear(&self.in_proj_weight, Some(&self.in_proj_bias))?;
        let [q, k, v]: [Tensor; 3] = qkv.f_chunk(3, -1)?.try_into().map_err(|parts: Vec<_>| {
            crate::Error::internal(format!(
                "attention's packed projection split into {} parts, not 3",
                parts.len()
            ))
        })?;
        let out = attention(&q, &k, &v, self.heads, causal, self.deterministic)?;
        self.out_proj.forward(&out)
    }
}

/// `ResidualAttentionBlock`: pre-norm attention and a QuickGELU MLP.
#[derive(Debug)]
pub(crate) struct ResidualAttentionBlock {
    attn: MultiheadAttention,
    ln_1: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    /// QuickGELU's two scalings live in `c_fc` and `c_proj`
    /// ([`Transformer::fold_quick_gelu`]).
    gelu_folded: bool,
}

/// OpenAI's QuickGELU, `x * sigmoid(1.702 x)` (not the exact GELU), written
/// as `silu(1.702 x) / 1.702` (the same function: `silu(y) = y · sigmoid(y)`),
/// which runs as one fused kernel and keeps one tensor for the backward pass
/// instead of two.
pub(crate) fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_mul_scalar(1.702)?.f_silu()?.f_div_scalar(1.702)?)
}

impl ResidualAttentionBlock {
    pub fn new(p: &Params, width: i64, heads: i64) -> Result<ResidualAttentionBlock> {
        let mlp = p.sub("mlp");
        Ok(ResidualAttentionBlock {
            attn: MultiheadAttention::new(&p.sub("attn"), width, heads)?,
            ln_1: LayerNorm::new(&p.sub("ln_1"), width)?,
            c_fc: Linear::new(&mlp.sub("c_fc"), width, 4 * width)?,
            c_proj: Linear::new(&mlp.sub("c_proj"), 4 * width, width)?,
            ln_2: LayerNorm::new(&p.sub("ln_2"), width)?,
            gelu_folded: false,
        })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let x = x.f_add(&self.attn.forward(&self.ln_1.forward(x)?, causal)?)?;
        let hidden = self.c_fc.forward(&self.ln_2.forward(&x)?)?;
        let hidden = if self.gelu_folded {
            hidden.f_silu()?
        } else {
            quick_gelu(&hidden)?
        };
        Ok(x.f_add(&self.c_proj.forward(&hidden)?)?)
    }
}

/// `Transformer`: `resblocks.{i}` residual attention blocks.
#[derive(Debug)]
pub(crate) struct Transformer {
    blocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub fn new(p: &Params, width: i64, layers: i64, heads: i64) -> Result<Transformer> {
        let r = p.sub("resblocks");
        Ok(Transformer {
            blocks: (0..layers)
                .map(|i| ResidualAttentionBlock::new(&r.sub(i), width, heads))
                .collect::<Result<_>>()?,
        })
    }

    /// Moves QuickGELU's scalings into the weights, once:
    /// `c_proj(silu(1.702 · c_fc(x)) / 1.702)` becomes
    /// `c_proj'(silu(c_fc'(x)))` with `c_fc` (weight and bias) × 1.702 and
    /// `c_proj`'s weight ÷ 1.702. The same function (to the weights'
    /// rounding), without two elementwise passes over the 4×-wide hidden
    /// activations forward and two more backward in every block. The
    /// weights change in place (in the variable store too). The in-place
    /// scalings allocate nothing, so only a failing device makes this an
    /// error, and the model's weights are then not to be trusted.
    pub fn fold_quick_gelu(&mut self) -> Result<()> {
        tch::no_grad(|| {
            for b in self.blocks.iter_mut().filter(|b| !b.gelu_folded) {
                let _ = b.c_fc.weight.shallow_clone().f_mul_scalar_(1.702)?;
                let _ = b.c_fc.bias.shallow_clone().f_mul_scalar_(1.702)?;
                let _ = b.c_proj.weight.shallow_clone().f_div_scalar_(1.702)?;
                b.gelu_folded = true;
            }
            Ok(())
        })
    }

    /// Every parameter of every block.
    pub fn tensors(&self) -> Vec<&Tensor> {
        let mut out = Vec::new();
        for b in &self.blocks {
            out.extend([&b.attn.in_proj_weight, &b.attn.in_proj_bias]);
            out.extend(b.attn.out_proj.tensors());
            out.extend(b.ln_1.tensors());
            out.extend(b.c_fc.tensors());
            out.extend(b.c_proj.tensors());
            out.extend(b.ln_2.tensors());
        }
        out
    }

    /// The residual blocks, in order.
    pub fn blocks(&self) -> &[ResidualAttentionBlock] {
        &self.blocks
    }

    /// `x` [N, L, D] (batch first; the official code is sequence first, the
    /// arithmetic is the same).
    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        for b in &self.blocks {
            x = b.forward(&x, causal)?;
        }
        Ok(x)
    }
}
