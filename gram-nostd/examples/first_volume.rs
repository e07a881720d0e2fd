//! A first use of gram-nostd: the volume of three embeddings, then one anchor scored against
//! prepared candidates, then a candidate through bytes. `cargo run -p gram-nostd --example first_volume`
use gram_nostd::{Candidate, candidate_at, score_row, volume};

fn main() -> Result<(), gram_nostd::GramError> {
    // Three modalities of one sample: small volume = aligned.
    let text = [0.6f32, 0.8, 0.0, 0.0];
    let image = [0.7f32, 0.7, 0.1, 0.0];
    let audio = [0.5f32, 0.8, 0.0, 0.3];
    println!(
        "vol(text, image, audio) = {:.6}",
        volume(&[&text[..], &image, &audio])?
    );

    // Score the text against 2 candidate (image, audio) pairs: factor the candidates once.
    let images = [
        0.7f32, 0.7, 0.1, 0.0, /* candidate 1 */ 0.0, 0.0, 1.0, 0.0,
    ];
    let audios = [
        0.5f32, 0.8, 0.0, 0.3, /* candidate 1 */ 0.0, 0.0, 0.0, 1.0,
    ];
    let modalities = [&images[..], &audios[..]];
    let candidates = [
        candidate_at(&modalities, 4, 0)?,
        candidate_at(&modalities, 4, 1)?,
    ];
    let mut volumes = [0.0f32; 2];
    score_row(&text, &modalities, &candidates, &mut volumes)?;
    println!("row: {volumes:?} (candidate 0 is the matching one)");

    // A prepared candidate as bytes (to flash onto a device) and back.
    let mut bytes = [0u8; Candidate::bytes_len(2)];
    candidates[0].to_bytes(&mut bytes)?;
    let loaded = Candidate::from_bytes(&bytes)?;
    println!(
        "candidate 0: {} bytes, vol(image, audio) = {:.6}",
        bytes.len(),
        loaded.volume()
    );
    Ok(())
}
