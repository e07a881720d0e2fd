//! Checkpoint crash safety: SIGKILL the training process at 20 random moments while it saves
//! a checkpoint every step; each time, `state.json` must name a complete checkpoint that loads,
//! and `--resume` must continue from it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn fit(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gram-train"));
    c.args([
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args([
        // More steps than 20 kills of ≤ 0.65 s can reach, even in a release build: a finished
        // run would have nothing to resume.
        "--steps",
        "1000000",
        "--batch-size",
        "32",
        "--embed-dim",
        "16",
        "--checkpoint-every",
        "1",
        "--no-progress",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
fn sigkill_during_saving_never_loses_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = gram_train::data::synth::SynthConfig {
        dims: vec![16, 12, 8],
        train: 256,
        val: 64,
        test: 64,
        ..Default::default()
    };
    gram_train::data::synth::generate(&cfg, &data).unwrap();
    let run = tmp.path().join("run");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut last_step = 0;
    let mut kills_after_a_checkpoint = 0;
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let resume = gram_train::train::checkpoint::state_path(&run).exists();
        let mut child = fit(&data, &run, if resume { &["--resume"] } else { &[] })
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + seed % 500));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Ok(state) = gram_train::train::checkpoint::load_state(&run) {
            // The named files are complete: both load as safetensors.
            for file in [&state.weights, &state.optimizer] {
                gram_train::train::checkpoint::load_tensors(&run, file, &candle_core::Device::Cpu)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            assert!(
                state.step >= last_step,
                "round {round}: went back from {last_step} to {}",
                state.step
            );
            last_step = state.step;
            kills_after_a_checkpoint += 1;
        }
    }
    assert!(
        kills_after_a_checkpoint >= 15,
        "only {kills_after_a_checkpoint} kills landed after a checkpoint"
    );
    // Resume once more and let it take two more steps: it continues from the survivor.
    let target = (last_step + 2).to_string();
    let ok = fit(&data, &run, &["--resume", "--stop-after", &target])
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        gram_train::train::checkpoint::load_state(&run)
            .unwrap()
            .step,
        last_step + 2
    );
}
