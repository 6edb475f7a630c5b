//! Parity with the official taming-transformers modules on small random models.
//!
//! Fixtures come from `scripts/reference/gen_vqgan_fixtures.py`, which builds
//! a VQModel-equivalent (ch 32, ch_mult (1,2), one residual block, attention at
//! the half-resolution level, z 32 → embed 16, 64 codes) and a GumbelVQ
//! equivalent (attention at full resolution, 64 codes) from taming's own
//! Encoder/Decoder/VectorQuantizer2/GumbelQuantize, with random weights and
//! near-tie-free code choices. fp32 on the CPU must agree to 1e-4 relative
//! error (max |ours − ref| / max |ref|) and the code indices exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};
use zoetrope::models::vqgan::{QuantizerKind, Vqgan, VqganConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vqgan")
        .join(name)
}

fn io(prefix: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(&format!("{prefix}_io.safetensors")))
        .expect("io fixture")
        .into_iter()
        .collect()
}

fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size(), "shape");
    let ours = ours.to_device(Device::Cpu).to_kind(Kind::Float);
    let diff = (&ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[])
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, tol: f64) {
    let e = rel_err(ours, reference);
    eprintln!("{what}: relative error {e:.2e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

fn assert_same_indices(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.size(), reference.size(), "{what}: shape");
    let ours = ours.to_device(Device::Cpu).to_kind(Kind::Int64);
    let differing = ours.ne_tensor(reference).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(differing, 0, "{what}: {differing} code indices differ");
}

fn check_vq(device: Device, tol: f64) {
    let model = Vqgan::load(&fixture("vq_weights.safetensors"), device).unwrap();
    let r = io("vq");
    let cfg = model.config();
    assert_eq!(cfg.quantizer, QuantizerKind::Nearest);
    assert_eq!(
        (cfg.ch, cfg.ch_mult.clone(), cfg.num_res_blocks),
        (32, vec![1, 2], 1)
    );
    assert_eq!(cfg.attn_levels, vec![1]);
    assert_eq!((cfg.z_channels, cfg.embed_dim, cfg.n_embed), (32, 16, 64));
    assert_eq!(model.factor(), 2);
    assert_eq!(model.codebook().size(), vec![64, 16]);

    let image = r["image"].to_device(device);
    let z = model.encode(&image).unwrap();
    assert_close("encode", &z, &r["z"], tol);

    // Quantising the reference z and our own z both give the reference codes.
    let (z_q, idx) = model.quantize(&r["z"].to_device(device)).unwrap();
    assert_same_indices("quantize(ref z)", &idx, &r["indices"]);
    assert_close("z_q", &z_q, &r["z_q"], 1e-6);
    let (_, idx_ours) = model.quantize(&z).unwrap();
    assert_same_indices("quantize(encode(image))", &idx_ours, &r["indices"]);
    assert_close(
        "embed_codes",
        &model.embed_codes(&r["indices"].to_device(device)).unwrap(),
        &r["z_q"],
        1e-6,
    );

    let decoded = model.decode(&r["z_q"].to_device(device)).unwrap();
    assert_close("decode", &decoded, &r["decoded"], tol);
}

fn check_gumbel(device: Device, tol: f64) {
    let model = Vqgan::load(&fixture("gumbel_weights.safetensors"), device).unwrap();
    let r = io("gumbel");
    let cfg = model.config();
    assert_eq!(cfg.quantizer, QuantizerKind::Gumbel);
    assert_eq!(cfg.attn_levels, vec![0]);
    assert_eq!((cfg.z_channels, cfg.embed_dim, cfg.n_embed), (32, 32, 64));

    let image = r["image"].to_device(device);
    let h = model.encode_prequant(&image).unwrap();
    assert_close("encode_prequant", &h, &r["prequant"], tol);
    let logits = model.gumbel_logits(&h).unwrap().expect("gumbel logits");
    assert_close("logits", &logits, &r["logits"], tol);
    assert_same_indices("argmax logits", &logits.argmax(1, false), &r["indices"]);

    // encode() gives the codebook vectors of the argmax codes: quantize is then exact.
    let z = model.encode(&image).unwrap();
    assert_close("encode (argmax codes)", &z, &r["z_q"], 1e-6);
    let (z_q, idx) = model.quantize(&z).unwrap();
    assert_same_indices("quantize(encode(image))", &idx, &r["indices"]);
    assert_close("z_q", &z_q, &r["z_q"], 1e-6);

    let decoded = model.decode(&r["z_q"].to_device(device)).unwrap();
    assert_close("decode", &decoded, &r["decoded"], tol);
}

#[test]
fn vqmodel_matches_official_fp32_cpu() {
    check_vq(Device::Cpu, 1e-4);
}

#[test]
fn gumbelvq_matches_official_fp32_cpu() {
    check_gumbel(Device::Cpu, 1e-4);
}

#[test]
fn matches_official_on_cuda_when_present() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: CUDA parity not checked here");
        return;
    }
    // cuDNN may use TF32 for fp32 convolutions, hence the looser bound.
    check_vq(Device::Cuda(0), 5e-3);
    check_gumbel(Device::Cuda(0), 5e-3);
}

#[test]
fn bf16_stays_close_to_fp32() {
    let model = Vqgan::load_with_kind(
        &fixture("vq_weights.safetensors"),
        Device::Cpu,
        Kind::BFloat16,
    )
    .unwrap();
    assert_eq!(model.kind(), Kind::BFloat16);
    let r = io("vq");
    // fp32 input is accepted and cast.
    let decoded = model.decode(&r["z_q"]).unwrap();
    assert_eq!(decoded.kind(), Kind::BFloat16);
    let e = rel_err(&decoded, &r["decoded"]);
    assert!(e < 0.05, "bf16 decode relative error {e:.3e}");
    let z = model.encode(&r["image"]).unwrap();
    let e = rel_err(&z, &r["z"]);
    assert!(e < 0.05, "bf16 encode relative error {e:.3e}");
    // Code search runs in fp32, but against the bf16-rounded codebook: the
    // reference z gives (almost) the reference codes.
    let (_, idx) = model.quantize(&r["z"]).unwrap();
    let differing = idx
        .ne_tensor(&r["indices"])
        .sum(Kind::Int64)
        .int64_value(&[]);
    assert!(
        differing * 50 <= idx.numel() as i64,
        "{differing} codes differ in bf16"
    );
}

#[test]
fn gradients_flow_to_the_latent_only() {
    let model = Vqgan::load(&fixture("vq_weights.safetensors"), Device::Cpu).unwrap();
    let r = io("vq");
    let z = r["z"].copy().set_requires_grad(true);
    let (z_q, _) = model.quantize(&z).unwrap();
    let st = &z + (z_q - &z).detach();
    let loss = model.decode(&st).unwrap().square().mean(Kind::Float);
    loss.backward();
    let g = z.grad();
    assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(!model.codebook().requires_grad(), "weights are frozen");
}

/// Our `Vqgan::new` creates exactly the variables `expected_shapes` describes
/// (which the keys test compares with the official full-size state dicts), on
/// a reduced-width copy of the full-size topologies.
#[test]
fn new_creates_exactly_the_expected_variables() {
    for quantizer in [QuantizerKind::Nearest, QuantizerKind::Gumbel] {
        let (mult, attn): (&[i64], &[i64]) = match quantizer {
            QuantizerKind::Nearest => (&[1, 1, 2, 2, 4], &[16]),
            QuantizerKind::Gumbel => (&[1, 1, 2, 4], &[32]),
        };
        let cfg = VqganConfig::from_ddconfig(32, mult, 2, attn, 256, 32, 32, 16, quantizer);
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = Vqgan::new(&vs.root(), &cfg).unwrap();
        let ours: std::collections::BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        assert_eq!(ours, cfg.expected_shapes(), "{quantizer:?}");
        assert_eq!(VqganConfig::infer(&ours).unwrap(), cfg);
    }
}

fn write(path: &Path, tensors: &[(String, Tensor)]) {
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, path).unwrap();
}

#[test]
fn loads_prefixed_checkpoints_and_ignores_loss_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture("vq_weights.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, t)| (format!("first_stage_model.{k}"), t))
            .collect();
    tensors.push((
        "first_stage_model.loss.discriminator.main.0.weight".into(),
        Tensor::zeros([4, 3, 4, 4], (Kind::Float, Device::Cpu)),
    ));
    tensors.push((
        "transformer.tok_emb.weight".into(),
        Tensor::zeros([8, 4], (Kind::Float, Device::Cpu)),
    ));
    tensors.push((
        "cond_stage_model.encoder.conv_in.weight".into(),
        Tensor::zeros([8, 4, 3, 3], (Kind::Float, Device::Cpu)),
    ));
    let path = dir.path().join("sflckr_like.safetensors");
    write(&path, &tensors);
    let model = Vqgan::load(&path, Device::Cpu).unwrap();
    let r = io("vq");
    assert_close(
        "decode",
        &model.decode(&r["z_q"]).unwrap(),
        &r["decoded"],
        1e-4,
    );
}

#[test]
fn missing_or_mismatched_keys_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<(String, Tensor)> = Tensor::read_safetensors(fixture("vq_weights.safetensors"))
        .unwrap()
        .into_iter()
        .collect();

    let path = dir.path().join("missing.safetensors");
    let some: Vec<_> = all
        .iter()
        .filter(|(k, _)| k != "decoder.up.1.attn.0.q.bias")
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    write(&path, &some);
    let e = Vqgan::load(&path, Device::Cpu).unwrap_err();
    assert_eq!(e.kind, zoetrope::ErrorKind::Weights);
    assert!(e.message.contains("missing.safetensors"), "{}", e.message);
    assert!(
        e.message.contains("decoder.up.1.attn.0.q.bias"),
        "{}",
        e.message
    );

    let path = dir.path().join("mismatch.safetensors");
    let bad: Vec<_> = all
        .iter()
        .map(|(k, t)| {
            if k == "decoder.norm_out.weight" {
                (k.clone(), Tensor::ones([48], (Kind::Float, Device::Cpu)))
            } else {
                (k.clone(), t.shallow_clone())
            }
        })
        .collect();
    write(&path, &bad);
    let e = Vqgan::load(&path, Device::Cpu).unwrap_err();
    assert!(e.message.contains("mismatch.safetensors"), "{}", e.message);
    assert!(
        e.message.contains("decoder.norm_out.weight"),
        "{}",
        e.message
    );

    let e = Vqgan::load(&dir.path().join("absent.safetensors"), Device::Cpu).unwrap_err();
    assert_eq!(e.kind, zoetrope::ErrorKind::Weights);
    assert!(e.message.contains("absent.safetensors"), "{}", e.message);

    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let e = Vqgan::load(&path, Device::Cpu).unwrap_err();
    assert!(e.message.contains("garbage.safetensors"), "{}", e.message);
}
