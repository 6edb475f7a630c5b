//! CLIP similarity of images to prompts, as CLIPig and the CLIP papers report
//! it: `100 · cos(image embedding, text embedding)`.
//!
//! Each image is prepared the way OpenAI's `clip.load` preprocessing does:
//! resized (bicubic, antialiased) so its short side is the perceptor's input
//! resolution, centre-cropped to a square, normalised with CLIP's mean and
//! standard deviation ([`crate::guidance::embed::clip_preprocess`], shared with
//! the render loop's image prompts). Prompts are tokenized like
//! `clip.tokenize` (77 tokens; a longer prompt is an error, as there).
//!
//! This is what `zoetrope score` prints; it is also a quick check that a
//! perceptor's weights behave (a broken conversion scores everything alike).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::guidance::embed::clip_preprocess;
use crate::models::clip::{Clip, Tokenizer};
use crate::models::weights::{resolve, ModelKind};
use crate::output::frames::{read_rgb, rgb_to_tensor};
use crate::Result;

/// One image/prompt/perceptor similarity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Similarity {
    /// The image as the user named it.
    pub image: String,
    pub prompt: String,
    /// The perceptor as the user named it (a model name or a path).
    pub perceptor: String,
    /// `100 · cos(image, prompt)` in CLIP's embedding space.
    pub similarity: f64,
}

/// Cosine similarities × 100, `[images][prompts]`, of RGB images `[1, 3, H, W]`
/// in [0, 1] (any size) to prompts, under one CLIP model.
pub fn clip_similarities(
    clip: &Clip,
    images: &[Tensor],
    prompts: &[&str],
) -> Result<Vec<Vec<f64>>> {
    if images.is_empty() || prompts.is_empty() {
        return Ok(vec![Vec::new(); images.len()]);
    }
    let device = clip.device();
    let r = clip.input_resolution();
    tch::no_grad(|| {
        let tokens = Tokenizer::shared()
            .tokenize(prompts, clip.context_length() as usize, false)?
            .f_to_device(device)?;
        let text = unit(&clip.encode_text(&tokens)?)?;
        let batch = images
            .iter()
            .map(|img| clip_preprocess(&img.f_to_device(device)?, r))
            .collect::<Result<Vec<Tensor>>>()?;
        let image = unit(&clip.encode_image(&Tensor::f_cat(&batch, 0)?)?)?;
        let sims = image.f_matmul(&text.f_tr()?)?.f_mul_scalar(100.0)?;
        let flat = Vec::<f64>::try_from(sims.f_flatten(0, -1)?.f_to_kind(Kind::Double)?)?;
        Ok(flat.chunks(prompts.len()).map(<[f64]>::to_vec).collect())
    })
}

/// Rows scaled to unit length, in fp32.
fn unit(x: &Tensor) -> Result<Tensor> {
    let x = x.f_to_kind(Kind::Float)?;
    let n = x.f_norm_scalaropt_dim(2, [-1], true)?;
    Ok(x.f_div(&n)?)
}

/// Scores image files against prompts with each perceptor (model names as in
/// scene files, or paths to `.safetensors` files, resolved through the weights
/// folder: see [`crate::models::weights::resolve`]). Results are ordered by
/// perceptor, then image, then prompt. An unreadable image is an input error
/// naming the file; a missing model is the weights error naming the command
/// that provides it.
pub fn score_files(
    images: &[PathBuf],
    prompts: &[String],
    perceptors: &[String],
    device: Device,
) -> Result<Vec<Similarity>> {
    // Read every image first: a typo in a file name should not wait for a model load.
    let pixels = images
        .iter()
        .map(|p| rgb_to_tensor(&read_rgb(p)?))
        .collect::<Result<Vec<Tensor>>>()?;
    let paths = perceptors
        .iter()
        .map(|name| resolve(ModelKind::Clip, name))
        .collect::<Result<Vec<PathBuf>>>()?;
    let prompt_refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (name, path) in perceptors.iter().zip(&paths) {
        let clip = Clip::load(path, device)?;
        let sims = clip_similarities(&clip, &pixels, &prompt_refs)
            .map_err(|e| e.context(format!("perceptor {name}")))?;
        for (image, row) in images.iter().zip(sims) {
            for (prompt, similarity) in prompts.iter().zip(row) {
                out.push(Similarity {
                    image: shown(image),
                    prompt: prompt.clone(),
                    perceptor: name.clone(),
                    similarity,
                });
            }
        }
    }
    Ok(out)
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}
