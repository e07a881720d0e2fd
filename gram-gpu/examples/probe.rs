use std::time::Instant;
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let d = 512;
    let rows = |seed: u64| -> Vec<f32> {
        let v: Vec<f32> = gram_nostd::uniform::Uniform::new(seed)
            .take(n * d)
            .map(|x| x as f32 - 0.5)
            .collect();
        v.chunks(d)
            .flat_map(|r| {
                let s = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter().map(move |x| x / s)
            })
            .collect()
    };
    let (a, m0, m1) = (rows(1), rows(2), rows(3));
    let t = Instant::now();
    let ctx = gram_gpu::GpuContext::new().unwrap();
    println!("context {:.3}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let s = gram_gpu::GpuScorer::new(&ctx, &[&m0, &m1], n, d).unwrap();
    println!("factor {:.3}", t.elapsed().as_secs_f64());
    for _ in 0..2 {
        let t = Instant::now();
        let v = s.volume_matrix(&a).unwrap();
        println!("volume {:.3} {}", t.elapsed().as_secs_f64(), v[5]);
        let t = Instant::now();
        s.reference_gemm(&a, false).unwrap();
        println!("gemm {:.3}", t.elapsed().as_secs_f64());
    }
}
