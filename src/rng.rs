//! Explicit random generators: every random draw of a render (the random
//! start, crop placements, cutout noise) and of the benchmark's random
//! weights comes from an [`Rng`] the caller owns and passes down.
//!
//! tch binds only libtorch's *global* generator, which every thread of the
//! process shares: two renders, or two tests, running at once in one process
//! would draw from each other's stream, and a seeded result would depend on
//! what else ran. An [`Rng`] is an ATen CPU generator of its own (made by the
//! C++ shim, `csrc/rng.cpp`). Seeded with `s`, it yields exactly the numbers
//! that `tch::manual_seed(s)` followed by the same draws from the global
//! generator yields, so seeded renders keep the frames they had when they
//! seeded the global generator.
//!
//! # CUDA
//!
//! Tensors on a GPU are drawn from that GPU's default generator, because a
//! captured CUDA graph can replay only the default generator's draws (its
//! offsets are registered with the capture). [`Rng::seed_device`] seeds it;
//! the render does so at every frame. That generator is process-wide, so
//! GPU draws stay independent of other work only when one render runs per
//! process on that GPU, which is how the command line runs them (a grid
//! renders its cells one after another). Tests run on the CPU.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;

use tch::{nn, Device, Kind, Tensor};

use crate::{Error, Result};

extern "C" {
    fn zt_free_string(s: *mut c_char);
    fn zt_cpu_generator_new(seed: u64, err: *mut *mut c_char) -> *mut c_void;
    fn zt_generator_free(g: *mut c_void);
    fn zt_generator_draw(
        g: *mut c_void,
        what: c_int,
        high: i64,
        sizes: *const i64,
        ndim: c_int,
        dtype: c_int,
        err: *mut *mut c_char,
    ) -> *mut c_void;
}

/// The message of a failed shim call (`err`, a malloc'd string freed here).
fn shim_error(what: &str, err: *mut c_char) -> Error {
    let msg = if err.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: the shim returns a malloc'd NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { zt_free_string(err) };
        s
    };
    Error::libtorch(what, &msg)
}

/// c10's `ScalarType` number of the kinds random values are drawn in.
fn scalar_type(kind: Kind) -> Result<c_int> {
    Ok(match kind {
        Kind::Int64 => 4,
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::BFloat16 => 15,
        other => {
            return Err(Error::internal(format!(
                "random values of kind {other:?} are not drawn"
            )))
        }
    })
}

/// A random generator of its own (module docs).
#[derive(Debug)]
pub struct Rng {
    generator: NonNull<c_void>,
    seed: u64,
}

// SAFETY: an ATen generator guards its state with its own mutex, and an
// `Rng` is only used through `&mut self`.
unsafe impl Send for Rng {}

impl Drop for Rng {
    fn drop(&mut self) {
        // SAFETY: made by zt_cpu_generator_new, freed once.
        unsafe { zt_generator_free(self.generator.as_ptr()) }
    }
}

/// What [`Rng::draw`] draws.
#[derive(Clone, Copy)]
enum Draw {
    Uniform = 0,
    Normal = 1,
    Integers = 2,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Result<Rng> {
        let mut err = std::ptr::null_mut();
        // SAFETY: returns a new generator or null with `err` set.
        let ptr = unsafe { zt_cpu_generator_new(seed, &mut err) };
        match NonNull::new(ptr) {
            Some(generator) => Ok(Rng { generator, seed }),
            None => Err(shim_error("making a random generator", err)),
        }
    }

    /// The seed this generator started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Seeds `device`'s own generator with this generator's seed, for the
    /// draws [`Rng::rand_on`] and [`Rng::randn_on`] make there (a no-op on
    /// the CPU, where this generator draws; module docs).
    pub fn seed_device(&self, device: Device) {
        if device.is_cuda() {
            tch::Cuda::manual_seed(self.seed);
        }
    }

    fn draw(&mut self, what: Draw, high: i64, size: &[i64], kind: Kind) -> Result<Tensor> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `sizes` outlives the call; the shim returns a new
        // heap-allocated at::Tensor* (owned by the returned Tensor) or null
        // with `err` set.
        let ptr = unsafe {
            zt_generator_draw(
                self.generator.as_ptr(),
                what as c_int,
                high,
                size.as_ptr(),
                size.len() as c_int,
                scalar_type(kind)?,
                &mut err,
            )
        };
        if ptr.is_null() {
            return Err(shim_error("drawing random numbers", err));
        }
        // SAFETY: see above.
        Ok(unsafe { Tensor::from_ptr(ptr as *mut torch_sys::C_tensor) })
    }

    /// Uniform `[0, 1)` float32 values on the CPU (`torch.rand`).
    pub fn rand(&mut self, size: &[i64]) -> Result<Tensor> {
        self.draw(Draw::Uniform, 0, size, Kind::Float)
    }

    /// Standard-normal float32 values on the CPU (`torch.randn`).
    pub fn randn(&mut self, size: &[i64]) -> Result<Tensor> {
        self.draw(Draw::Normal, 0, size, Kind::Float)
    }

    /// Integers uniform in `[0, high)`, int64, on the CPU (`torch.randint`).
    pub fn randint(&mut self, high: i64, size: &[i64]) -> Result<Tensor> {
        self.draw(Draw::Integers, high, size, Kind::Int64)
    }

    /// Uniform `[0, 1)` values of `kind` on `device`: from this generator on
    /// the CPU, from the device's own generator on a GPU (module docs).
    pub fn rand_on(&mut self, size: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => self.draw(Draw::Uniform, 0, size, kind),
            _ => Ok(Tensor::f_rand(size, (kind, device))?),
        }
    }

    /// Standard-normal values of `kind` on `device`, drawn as
    /// [`rand_on`](Self::rand_on) draws.
    pub fn randn_on(&mut self, size: &[i64], kind: Kind, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => self.draw(Draw::Normal, 0, size, kind),
            _ => Ok(Tensor::f_randn(size, (kind, device))?),
        }
    }
}

/// Fills every variable of `vs` with random values of a sensible scale, drawn
/// from `rng`: matrices and convolution kernels
/// `N(0, 1/fan_in)`, norm scales 1 and shifts 0, BatchNorm running statistics
/// (0, 1), other vectors (ViT's class embedding) `N(0, 1/len)`, and scalars
/// (CLIP's `logit_scale`) `ln(1/0.07)`, in the order of the variables' names. Random but well-scaled weights keep the
/// activations finite through every layer, so the step does the same work a
/// trained model's would.
pub fn randomize(vs: &nn::VarStore, rng: &mut Rng) -> Result<()> {
    // Sorted: the store is a hash map, and the draws must go to the same
    // variables in every build (fp32 and bf16 must get the same weights).
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars {
            if !var.is_floating_point() {
                continue;
            }
            let size = var.size();
            let leaf = name.rsplit('.').next().unwrap_or("");
            let values = match (size.len(), leaf) {
                (0, _) => Tensor::f_from_slice(&[(1.0f64 / 0.07).ln()])?.f_reshape([])?,
                (_, "running_mean") => Tensor::f_zeros(&size, (Kind::Float, Device::Cpu))?,
                (_, "running_var") => Tensor::f_ones(&size, (Kind::Float, Device::Cpu))?,
                (1, "weight") => Tensor::f_ones(&size, (Kind::Float, Device::Cpu))?,
                (1, "bias") => Tensor::f_zeros(&size, (Kind::Float, Device::Cpu))?,
                _ => {
                    let fan_in = (var.numel() as i64 / size[0].max(1)).max(1) as f64;
                    let scale = if size.len() == 1 {
                        1.0 / (size[0] as f64).sqrt()
                    } else {
                        1.0 / fan_in.sqrt()
                    };
                    rng.randn(&size)?.f_mul_scalar(scale)?
                }
            };
            let mut var = var.shallow_clone();
            var.f_copy_(&values)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_its_stream_and_seeds_differ() {
        let draw = |seed| {
            let mut r = Rng::new(seed).unwrap();
            let a = Vec::<f32>::try_from(&r.randn(&[20]).unwrap()).unwrap();
            let b = Vec::<f32>::try_from(&r.rand(&[5]).unwrap()).unwrap();
            let c = Vec::<i64>::try_from(&r.randint(7, &[5]).unwrap()).unwrap();
            (a, b, c)
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3).0, draw(4).0);
        let (_, u, ints) = draw(3);
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(ints.iter().all(|i| (0..7).contains(i)));
        let mut r = Rng::new(1).unwrap();
        for kind in [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16] {
            let t = r.randn_on(&[2, 3], kind, Device::Cpu).unwrap();
            assert_eq!((t.kind(), t.size()), (kind, vec![2, 3]));
        }
        assert!(r.rand_on(&[2], Kind::Int, Device::Cpu).is_err());
    }

    /// The stream a seed gives is the one libtorch's global generator gives
    /// after `manual_seed` with that seed (so seeded renders keep their
    /// frames). The global draws run in a child process: this test must not
    /// touch the global generator other tests may be using.
    #[test]
    fn matches_the_global_generator_after_manual_seed() {
        if let Ok(seed) = std::env::var("ZOETROPE_RNG_CHILD") {
            tch::manual_seed(seed.parse().unwrap());
            let a = Tensor::randn([20], (Kind::Float, Device::Cpu));
            let b = Tensor::rand([3], (Kind::Float, Device::Cpu));
            let c = Tensor::randint(9, [4], (Kind::Int64, Device::Cpu));
            let mut out = Vec::<f32>::try_from(&a).unwrap();
            out.extend(Vec::<f32>::try_from(&b).unwrap());
            out.extend(Vec::<i64>::try_from(&c).unwrap().iter().map(|&i| i as f32));
            println!("DRAWS {out:?}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new(exe)
            .args([
                "--exact",
                "rng::tests::matches_the_global_generator_after_manual_seed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ZOETROPE_RNG_CHILD", "1234")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&child.stdout);
        // The test harness prints the test's name on the same line.
        let line = text
            .split_once("DRAWS ")
            .and_then(|(_, rest)| rest.lines().next())
            .unwrap_or_else(|| panic!("child printed no draws: {text}"));
        let mut r = Rng::new(1234).unwrap();
        let mut ours = Vec::<f32>::try_from(&r.randn(&[20]).unwrap()).unwrap();
        ours.extend(Vec::<f32>::try_from(&r.rand(&[3]).unwrap()).unwrap());
        ours.extend(
            Vec::<i64>::try_from(&r.randint(9, &[4]).unwrap())
                .unwrap()
                .iter()
                .map(|&i| i as f32),
        );
        assert_eq!(line, format!("{ours:?}"));
    }
}
