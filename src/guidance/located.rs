//! Location-aware image prompts (pytti-core's `LocationAwareMCIP`,
//! docs/design.md §2b).
//!
//! An image prompt `[path]` is not one embedding of the whole picture: when
//! the guide is built, the picture is cut as a step cuts the image (each
//! perceptor's sampler: its placements, augmentations and noise, drawn from
//! a seeded [`Rng`] so a resumed render embeds the same cuts) and every cut
//! is embedded. Each step, the current crops are matched one to one with
//! the prompt's cuts so that the sum of the distances between their centres
//! is smallest (pytti: `scipy.optimize.linear_sum_assignment` over `cdist`
//! of the centres, as fractions of each image's sides), and each current
//! crop is compared with the cut it was matched to. pytti adds 0.7 to these
//! distances ([`LOCATED_OFFSET`]): the gradient is the same, the loss's value
//! and what a stop compares against are not.
//!
//! On the device the matching is one gather: per perceptor the distances to
//! the targets `[P, D]` followed by every located prompt's cuts `[K, D]`,
//! `[P + K, N]`, and an index `[P, N]` that picks, per prompt row and crop,
//! the row to read (the prompt's own row for a text prompt).

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;
use tch::{Kind, Tensor};

use crate::guidance::cutouts::CutoutSampler;
use crate::guidance::image::rgb_dims;
use crate::guidance::mask::CropPlace;
use crate::models::clip::Clip;
use crate::rng::Rng;
use crate::{Error, Result};

/// What pytti adds to a location-aware image prompt's distances.
pub const LOCATED_OFFSET: f64 = 0.7;

/// Scale of the centre distances in the integer costs of the assignment:
/// ties closer than 2⁻³² are broken by the algorithm, not by the distance.
const COST_SCALE: f64 = 4_294_967_296.0;

/// An image prompt's own cuts through one perceptor.
#[derive(Debug)]
pub struct PromptCuts {
    /// The cuts' embeddings `[N, D]`, float32, detached.
    pub embeds: Tensor,
    /// Each cut's centre `(x, y)` as fractions of the prompt image's sides
    /// (float32, as pytti's `positions + sizes / 2`).
    pub centers: Vec<[f32; 2]>,
}

impl PromptCuts {
    /// Cuts the prompt image `rgb` (`[1, 3, H, W]` in `[0, 1]`) as a step
    /// cuts the render with `sampler` (placements, augmentations and noise
    /// from `rng`, or the sampler's fixed prompt placements) and embeds the
    /// cuts with `clip`.
    pub fn cut(clip: &Clip, sampler: &CutoutSampler, rgb: &Tensor, rng: &mut Rng) -> Result<Self> {
        let (h, w) = rgb_dims(rgb, "an image prompt")?;
        let rgb = rgb.f_to_device(clip.device())?.f_to_kind(Kind::Float)?;
        let crops = sampler.place_on_prompt(w, h, rng)?;
        let cuts = sampler.sample_with(&rgb, &crops, rng)?;
        let embeds = tch::no_grad(|| clip.encode_image(&cuts))?
            .f_to_kind(Kind::Float)?
            .f_detach()?;
        let centers = crops
            .iter()
            .map(|c| center(&CropPlace::of(c, w, h)))
            .collect();
        Ok(PromptCuts { embeds, centers })
    }

    /// Another handle on the same cuts (the embeddings are shared).
    pub fn shallow_clone(&self) -> Self {
        PromptCuts {
            embeds: self.embeds.shallow_clone(),
            centers: self.centers.clone(),
        }
    }
}

/// A crop's centre as pytti computes it (float32).
fn center(p: &CropPlace) -> [f32; 2] {
    [p.x + p.w / 2.0, p.y + p.h / 2.0]
}

/// For every current crop, the prompt cut it is matched with: the one-to-one
/// assignment of smallest total distance between centres (euclidean, in
/// float64 as scipy's `cdist`). The prompt has as many cuts as the step has
/// crops (both come from the perceptor's sampler).
pub fn assign(prompt: &[[f32; 2]], current: &[CropPlace]) -> Result<Vec<usize>> {
    let n = prompt.len();
    if current.len() != n {
        return Err(Error::internal(format!(
            "a location-aware image prompt with {n} cuts for a step with {} crops",
            current.len()
        )));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let now: Vec<[f32; 2]> = current.iter().map(center).collect();
    let costs = Matrix::from_fn(n, n, |(k, j)| {
        let dx = prompt[k][0] as f64 - now[j][0] as f64;
        let dy = prompt[k][1] as f64 - now[j][1] as f64;
        ((dx * dx + dy * dy).sqrt() * COST_SCALE).round() as i64
    });
    // Rows are the prompt's cuts: `by_cut[k]` is the crop matched with cut k.
    let (_, by_cut) = kuhn_munkres_min(&costs);
    let mut by_crop = vec![0; n];
    for (k, &j) in by_cut.iter().enumerate() {
        by_crop[j] = k;
    }
    Ok(by_crop)
}

/// The guide's location-aware image prompts: per perceptor the targets
/// extended by every located prompt's cuts, and where each prompt's cuts are.
#[derive(Debug)]
pub struct LocatedPrompts {
    /// Per prompt row of the weight table, per perceptor, where its cuts are
    /// (`None` for a text prompt).
    rows: Vec<Option<Vec<CutRows>>>,
    /// Per perceptor, `[P + K, D]`: the prompts' targets, then the cuts.
    pub extended: Vec<Tensor>,
    /// `[P, 1]` float32: [`LOCATED_OFFSET`] on located rows, 0 elsewhere.
    pub offsets: Tensor,
}

/// One prompt's cuts through one perceptor, in the extended targets.
#[derive(Debug)]
struct CutRows {
    /// The first cut's row.
    start: i64,
    /// The cuts' centres, in row order.
    centers: Vec<[f32; 2]>,
}

impl LocatedPrompts {
    /// From the stacked targets (per perceptor `[P, D]`) and every prompt's
    /// cuts in weight-table order (per perceptor; `None` for text); `None`
    /// when no prompt is located.
    pub fn new(targets: &[Tensor], cuts: &[Option<&[PromptCuts]>]) -> Result<Option<Self>> {
        if cuts.iter().all(Option::is_none) {
            return Ok(None);
        }
        let p_count = cuts.len() as i64;
        let mut extended = Vec::with_capacity(targets.len());
        let mut rows: Vec<Option<Vec<CutRows>>> =
            cuts.iter().map(|c| c.map(|_| Vec::new())).collect();
        for (i, t) in targets.iter().enumerate() {
            let mut parts = vec![t.shallow_clone()];
            let mut next = p_count;
            for (c, r) in cuts.iter().zip(&mut rows) {
                if let (Some(c), Some(r)) = (c, r) {
                    r.push(CutRows {
                        start: next,
                        centers: c[i].centers.clone(),
                    });
                    next += c[i].embeds.size()[0];
                    parts.push(c[i].embeds.f_to_device(t.device())?);
                }
            }
            extended.push(Tensor::f_cat(&parts, 0)?);
        }
        let offsets: Vec<f32> = cuts
            .iter()
            .map(|c| {
                if c.is_some() {
                    LOCATED_OFFSET as f32
                } else {
                    0.0
                }
            })
            .collect();
        let device = targets.first().map_or(tch::Device::Cpu, Tensor::device);
        let offsets = Tensor::f_from_slice(&offsets)?
            .f_view([p_count, 1])?
            .f_to_device(device)?;
        Ok(Some(LocatedPrompts {
            rows,
            extended,
            offsets,
        }))
    }

    /// The cuts' embeddings `[N, D]` of prompt row `row` for perceptor `i`
    /// (`None` for a text prompt).
    pub fn cuts(&self, row: usize, i: usize) -> Result<Option<Tensor>> {
        match self.rows.get(row) {
            Some(Some(per)) => {
                let r = &per[i];
                let n = r.centers.len() as i64;
                Ok(Some(self.extended[i].f_narrow(0, r.start, n)?))
            }
            _ => Ok(None),
        }
    }

    /// Perceptor `i`'s gather index for a step's crops `places`: `[P, N]`
    /// row-major, each text prompt reading its own row, each located prompt
    /// the row of the cut matched with the crop ([`assign`]).
    pub fn index(&self, i: usize, places: &[CropPlace]) -> Result<Vec<i64>> {
        let n = places.len();
        let mut index = Vec::with_capacity(self.rows.len() * n);
        for (row, located) in self.rows.iter().enumerate() {
            match located {
                None => index.extend(std::iter::repeat_n(row as i64, n)),
                Some(per) => {
                    let r = &per[i];
                    let matched = assign(&r.centers, places)?;
                    index.extend(matched.iter().map(|&k| r.start + k as i64));
                }
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(x: f32, y: f32, s: f32) -> CropPlace {
        CropPlace { x, y, w: s, h: s }
    }

    #[test]
    fn each_crop_gets_the_cut_nearest_in_place_overall() {
        // Cut 0 is centred at (0.2, 0.2), cut 1 at (0.8, 0.8), cut 2 at (0.8, 0.2).
        let cuts = [[0.2, 0.2], [0.8, 0.8], [0.8, 0.2]];
        // Crop 0 centred at (0.75, 0.75), crop 1 at (0.25, 0.25), crop 2 at (0.75, 0.25).
        let crops = [
            place(0.5, 0.5, 0.5),
            place(0.0, 0.0, 0.5),
            place(0.5, 0.0, 0.5),
        ];
        assert_eq!(assign(&cuts, &crops).unwrap(), vec![1, 0, 2]);
    }

    #[test]
    fn the_assignment_minimises_the_total_not_each_crop_greedily() {
        // On one line: cuts at x = 0.0 and 0.4, crops centred at 0.3 and 0.5.
        // Both crops are nearest to cut 1; greedy in crop order would give
        // crop 0 → cut 1 (0.1) and crop 1 → cut 0 (0.5), total 0.6; the
        // smallest total is crop 0 → cut 0 (0.3) and crop 1 → cut 1 (0.1).
        let cuts = [[0.0, 0.5], [0.4, 0.5]];
        let crops = [place(0.2, 0.4, 0.2), place(0.4, 0.4, 0.2)];
        assert_eq!(assign(&cuts, &crops).unwrap(), vec![0, 1]);
    }

    #[test]
    fn a_count_mismatch_is_an_error() {
        assert!(assign(&[[0.5, 0.5]], &[]).is_err());
    }
}
