//! Scaled dot-product attention for every model, with a deterministic form.
//!
//! libtorch's fused attention kernels pick their own backend. On an H100 the
//! CLIP towers' attention ran through cuDNN's flash kernels, whose backward
//! pass sums the query gradient in float32 with atomic additions, so two
//! runs with the same seed differ in the last bits. Guidance amplifies that:
//! the VQGAN quantiser maps the latent to its nearest code, and a last-bit
//! difference flips a code now and then, so seeded renders on a GPU did not
//! repeat (BENCHMARKS.md, run 6). The explicit form, `softmax(q kᵀ / √d) v`,
//! runs only matrix products and a softmax, whose results do not depend on
//! scheduling.
//!
//! Chosen per model when it is built
//! ([`crate::models::ModelOptions::deterministic_attention`], from
//! [`crate::tuning::Tuning`]'s `deterministic`, which also puts cuDNN in its
//! deterministic mode).

use tch::{Kind, Tensor};

use crate::Result;

/// `softmax(q kᵀ / √d) v` over `[N, heads, L, d]` tensors (`q` may have its own
/// length), masking later positions when `causal`: libtorch's fused kernels,
/// or the explicit form when `deterministic`.
pub(crate) fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    deterministic: bool,
) -> Result<Tensor> {
    if deterministic {
        explicit(q, k, v, causal)
    } else {
        Ok(Tensor::f_scaled_dot_product_attention(
            q,
            k,
            v,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        )?)
    }
}

/// The explicit form, in the inputs' kind: bf16 matrix products accumulate in
/// float32, and so does libtorch's softmax kernel for a bf16 input, so only
/// the stored probabilities are rounded (the backward pass keeps them: one
/// `[N, heads, Lq, L]` tensor per attention, 3.4 MiB per ViT-B/32 block for
/// 60 cutouts in bf16).
fn explicit(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let (qs, ks) = (q.size(), k.size());
    let (&[.., lq, d], &[.., l, _]) = (qs.as_slice(), ks.as_slice()) else {
        return Err(crate::Error::internal(format!(
            "attention wants queries and keys with a length and a feature axis, got {qs:?} and {ks:?}"
        )));
    };
    let mut scores = q
        .f_matmul(&k.f_transpose(-2, -1)?)?
        .f_mul_scalar(1.0 / (d as f64).sqrt())?;
    if causal {
        let later = Tensor::f_ones([lq, l], (Kind::Bool, q.device()))?.f_triu(1)?;
        scores = scores.f_masked_fill(&later, f64::NEG_INFINITY)?;
    }
    Ok(scores.f_softmax(-1, v.f_kind()?)?.f_matmul(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The explicit form gives libtorch's values and input gradients, with
    /// and without the causal mask, and with a query shorter than the keys
    /// (the ResNet's attention pool).
    #[test]
    fn explicit_attention_matches_libtorch() {
        let mut rng = crate::rng::Rng::new(17).unwrap();
        for (lq, causal) in [(7, false), (7, true), (1, false)] {
            let q0 = rng.randn(&[2, 3, lq, 8]).unwrap();
            let k0 = rng.randn(&[2, 3, 7, 8]).unwrap();
            let v0 = rng.randn(&[2, 3, 7, 8]).unwrap();
            let g = rng.randn(&[2, 3, lq, 8]).unwrap();
            let run = |det: bool| {
                let (q, k, v) = (
                    q0.copy().set_requires_grad(true),
                    k0.copy().set_requires_grad(true),
                    v0.copy().set_requires_grad(true),
                );
                let y = if det {
                    explicit(&q, &k, &v, causal).unwrap()
                } else {
                    Tensor::scaled_dot_product_attention(
                        &q,
                        &k,
                        &v,
                        None::<Tensor>,
                        0.0,
                        causal,
                        None,
                        false,
                    )
                };
                (&y * &g).sum(Kind::Float).backward();
                [y.detach(), q.grad(), k.grad(), v.grad()]
            };
            let (fused, mine) = (run(false), run(true));
            for (name, (a, b)) in ["output", "dq", "dk", "dv"]
                .iter()
                .zip(fused.iter().zip(&mine))
            {
                let err = (a - b).abs().max().double_value(&[]);
                let scale = a.abs().max().double_value(&[]);
                assert!(
                    err <= 1e-5 * scale.max(1.0),
                    "{name}, lq {lq}, causal {causal}: {err} (scale {scale})"
                );
            }
            // Masked positions get no attention: the first query sees only the first key.
            if causal {
                let first = mine[0].select(2, 0);
                let expected = v0.select(2, 0);
                let err = (first - expected).abs().max().double_value(&[]);
                assert!(err < 1e-6, "causal first row: {err}");
            }
        }
    }
}
