//! The volume matrix and top-k on the default GPU adapter (any wgpu backend; Mesa's lavapipe
//! counts). Prints a reason and exits 0 where there is no adapter.
//! `cargo run --release -p gram-gpu --example gpu_volume_matrix`
use gram_gpu::{GpuContext, GpuError, GpuScorer};

fn main() -> Result<(), GpuError> {
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(GpuError::NoAdapter(why)) => {
            println!("no GPU adapter here ({why}); nothing to run");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let (n, dim) = (512, 128);
    let row = |seed: usize, i: usize| -> Vec<f32> {
        (0..dim)
            .map(|d| ((i * 5 + d) as f32 * 0.37).sin() + 0.2 * ((seed + i * d) as f32).cos())
            .collect()
    };
    let anchor: Vec<f32> = (0..n).flat_map(|i| row(1, i)).collect();
    let video: Vec<f32> = (0..n).flat_map(|i| row(2, i)).collect();
    let audio: Vec<f32> = (0..n).flat_map(|i| row(3, i)).collect();
    let scorer = GpuScorer::new(&ctx, &[&video, &audio], n, dim)?;
    let volumes = scorer.volume_matrix(&anchor)?;
    let best = scorer.top_k(&anchor, 5)?;
    println!(
        "{} volumes; anchor 0's 5 smallest: {:?}",
        volumes.len(),
        best[0]
    );
    Ok(())
}
