//! Train GRAM on a small synthetic feature dataset on the CPU and print the validation
//! retrieval: the library calls behind `gram-train synth` and `gram-train fit`.
//! `cargo run --release -p gram-train --example train_synthetic`
use candle_core::Device;
use gram_train::config::TrainConfig;
use gram_train::data::synth::{SynthConfig, generate};
use gram_train::train::fit::{FitOptions, fit};

fn main() -> Result<(), gram_train::error::Error> {
    let dir = std::env::temp_dir().join(format!("gram-example-{}", std::process::id()));
    let data = dir.join("data");
    let synth = SynthConfig {
        train: 1024,
        val: 256,
        test: 256,
        dims: vec![64, 96, 48],
        ..SynthConfig::default()
    };
    generate(&synth, &data)?;
    let cfg = TrainConfig {
        steps: 60,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let summary = fit(
        &data,
        &dir.join("run"),
        &cfg,
        FitOptions::default(),
        &Device::Cpu,
    )?;
    println!(
        "{} steps, final loss {:.3}, {:.0} samples/s; validation: {}",
        summary.steps,
        summary.final_loss,
        summary.samples_per_s,
        summary.val.map_or("none".into(), |v| v.to_string())
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
