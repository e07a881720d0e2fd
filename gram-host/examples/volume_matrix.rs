//! The volume matrix of a batch on the CPU backend, and its retrieval metrics.
//! `cargo run --release -p gram-host --example volume_matrix`
use gram_host::cpu::Scorer;
use gram_host::metrics::evaluate_matrix;

fn main() -> Result<(), gram_nostd::GramError> {
    let (n, dim) = (256, 64);
    // Sample i's three modalities share a random latent vector, plus noise of their own.
    let mut state = 1u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let latent: Vec<f32> = (0..n * dim).map(|_| uniform()).collect();
    let mut modality = || -> Vec<f32> { latent.iter().map(|z| z + 0.5 * uniform()).collect() };
    let (anchor, video, audio) = (modality(), modality(), modality());
    let scorer = Scorer::new(&[&video, &audio], n, dim)?;
    let mut volumes = vec![0.0f32; n * n];
    let stats = scorer.volume_matrix(&anchor, &mut volumes)?;
    let r = evaluate_matrix(&volumes, n)?;
    println!("{n}×{n} volumes ({stats:?})");
    print!("{}", r.table());
    Ok(())
}
