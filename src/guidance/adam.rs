//! Adam, written out so that its state can be saved and restored.
//!
//! tch's `nn::Optimizer` hides its moment buffers, so a resumed render could not
//! continue with the exact optimiser state an uninterrupted one has. This Adam
//! follows `torch.optim.Adam` with its defaults (betas 0.9/0.999, eps 1e-8, no
//! weight decay, no amsgrad) step for step; a test checks it against libtorch's own.

use crate::{Error, Result};
use tch::Tensor;

/// Adam state for one parameter tensor.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Number of steps taken since the last reset.
    pub step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    /// Fresh state for a parameter shaped like `param`.
    pub fn new(param: &Tensor, lr: f64) -> Result<Adam> {
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            exp_avg: param.f_detach()?.f_zeros_like()?,
            exp_avg_sq: param.f_detach()?.f_zeros_like()?,
        })
    }

    /// Forgets the moments (pytti's `reset_lr_each_frame`).
    pub fn reset(&mut self) -> Result<()> {
        self.step = 0;
        let _ = self.exp_avg.f_zero_()?;
        let _ = self.exp_avg_sq.f_zero_()?;
        Ok(())
    }

    /// Updates `param` in place from its accumulated gradient, then clears the gradient.
    pub fn step(&mut self, param: &mut Tensor) -> Result<()> {
        if !param.f_grad()?.defined() {
            return Ok(());
        }
        let [a, b] = self.advance();
        let scalars = Tensor::f_from_slice(&[a as f32, b as f32])?.f_to_device(param.device())?;
        self.apply(param, &scalars)
    }

    /// The host half of a step: counts it and returns `[lr / bc1, bc2]`, the
    /// learning rate over the first moment's bias correction and the second
    /// moment's bias correction, for [`apply`](Self::apply).
    pub fn advance(&mut self) -> [f64; 2] {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        [self.lr / bc1, bc2]
    }

    /// The device half of a step: the update of `param` from its gradient with
    /// `scalars` = [`advance`](Self::advance)'s two numbers as a float32
    /// tensor on the device, then the gradient cleared. Nothing here reads a
    /// number on the host, so a CUDA graph can capture it.
    pub fn apply(&self, param: &mut Tensor, scalars: &Tensor) -> Result<()> {
        let mut grad = param.f_grad()?;
        if !grad.defined() {
            return Ok(());
        }
        tch::no_grad(|| -> Result<()> {
            let grad = grad.f_to_kind(self.exp_avg.kind())?;
            // Shallow clones: the same storage, updated in place.
            let (mut m, mut v) = (
                self.exp_avg.shallow_clone(),
                self.exp_avg_sq.shallow_clone(),
            );
            let _ = m.f_mul_scalar_(self.beta1)?;
            let _ = m.f_add_(&grad.f_mul_scalar(1.0 - self.beta1)?)?;
            let _ = v.f_mul_scalar_(self.beta2)?;
            let _ = v.f_add_(&grad.f_mul(&grad)?.f_mul_scalar(1.0 - self.beta2)?)?;
            let step_size = scalars.f_get(0)?;
            let bc2 = scalars.f_get(1)?;
            let denom = v.f_div(&bc2)?.f_sqrt()?.f_add_scalar(self.eps)?;
            let update = m.f_div(&denom)?.f_mul(&step_size)?;
            let _ = param.f_sub_(&update.f_to_kind(param.kind())?)?;
            Ok(())
        })?;
        let _ = grad.f_zero_()?;
        Ok(())
    }

    /// The moment tensors, for saving with the rest of a run's state.
    pub fn tensors(&self) -> [(&'static str, &Tensor); 2] {
        [
            ("adam.exp_avg", &self.exp_avg),
            ("adam.exp_avg_sq", &self.exp_avg_sq),
        ]
    }

    /// Restores moments saved by [`Adam::tensors`] into this state.
    pub fn restore(&mut self, exp_avg: &Tensor, exp_avg_sq: &Tensor, step: i64) -> Result<()> {
        if exp_avg.size() != self.exp_avg.size() || exp_avg_sq.size() != self.exp_avg_sq.size() {
            return Err(Error::input(format!(
                "saved optimiser state has shape {:?}, the run needs {:?}: the resume state does not belong to this scene",
                exp_avg.size(),
                self.exp_avg.size()
            )));
        }
        tch::no_grad(|| -> Result<()> {
            self.exp_avg.f_copy_(exp_avg)?;
            self.exp_avg_sq.f_copy_(exp_avg_sq)?;
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{nn, Device, Kind};

    /// Our Adam and libtorch's must agree step for step on the same problem.
    #[test]
    fn matches_libtorch_adam() {
        let mut rng = crate::rng::Rng::new(3).unwrap();
        let target = rng.randn(&[4, 5]).unwrap();
        let init = rng.randn(&[4, 5]).unwrap();

        let vs = nn::VarStore::new(Device::Cpu);
        let p_ref = vs.root().var_copy("p", &init);
        let mut opt = nn::Adam::default().build(&vs, 0.1).unwrap();

        let mut p = init.copy().set_requires_grad(true);
        let mut adam = Adam::new(&p, 0.1).unwrap();
        for _ in 0..25 {
            let loss_ref = (&p_ref - &target)
                .pow_tensor_scalar(3)
                .abs()
                .mean(Kind::Float);
            opt.backward_step(&loss_ref);
            let loss = (&p - &target).pow_tensor_scalar(3).abs().mean(Kind::Float);
            loss.backward();
            adam.step(&mut p).unwrap();
        }
        let diff = (&p - &p_ref).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
        // And it actually moved toward the target.
        let before = (&init - &target).abs().mean(Kind::Float).double_value(&[]);
        let after = (&p - &target).abs().mean(Kind::Float).double_value(&[]);
        assert!(after < before * 0.5, "{before} -> {after}");
    }

    #[test]
    fn reset_forgets_moments() {
        let mut p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut adam = Adam::new(&p, 0.5).unwrap();
        (&p * 2.0).sum(Kind::Float).backward();
        adam.step(&mut p).unwrap();
        assert_eq!(adam.step, 1);
        // First Adam step moves each coordinate by exactly lr (m̂/sqrt(v̂) = 1).
        let moved = 1.0 - p.double_value(&[0]);
        assert!((moved - 0.5).abs() < 1e-6, "moved {moved}");
        adam.reset().unwrap();
        assert_eq!(adam.step, 0);
        assert_eq!(adam.exp_avg.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
