//! The approximate index (`gram index build --ann`, `gram search --approx`): with everything
//! probed it is the exact search, bit for bit; a certified query always equals the exact
//! search; recall on clustered data; the CLI's outputs, the merge of approximate parts, and
//! the refusals.

mod common;

use common::*;
use gram_host::index::ann::{self, ApproxOptions};
use gram_host::index::{self, BuildOptions, Index};
use gram_host::input::View;
use std::path::{Path, PathBuf};

/// Clustered data in dimension `d`: `n` candidates whose two vectors are noisy views of one of
/// 40 centres, `q` queries near centres too; candidates 7 and 9 are rank-deficient (their two
/// vectors equal: w = 0, volume 0 with every query) and 20, 21 duplicate candidate 19 (ties).
struct Clustered {
    dir: tempfile::TempDir,
    d: usize,
    q: Vec<f32>,
}

impl Clustered {
    fn new(n: usize, q: usize, d: usize, seed: u64) -> Clustered {
        let centres = pseudo(40 * d, seed);
        let noise = |len: usize, s: u64, scale: f32| -> Vec<f32> {
            pseudo(len, s).iter().map(|x| (x - 0.5) * scale).collect()
        };
        let views = |rows: usize, s: u64| -> Vec<f32> {
            let z = noise(rows * d, s, 0.4);
            (0..rows * d)
                .map(|i| centres[((i / d) * 7 % 40) * d + i % d] - 0.5 + z[i])
                .collect()
        };
        let (mut v, mut a) = (views(n, seed + 1), views(n, seed + 2));
        for j in [7, 9] {
            let row = v[j * d..(j + 1) * d].to_vec();
            a[j * d..(j + 1) * d].copy_from_slice(&row);
        }
        for dup in [20, 21] {
            v.copy_within(19 * d..20 * d, dup * d);
            a.copy_within(19 * d..20 * d, dup * d);
        }
        let qs = views(q, seed + 3);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.npy"), f32_npy(n, d, &v)).unwrap();
        std::fs::write(dir.path().join("a.npy"), f32_npy(n, d, &a)).unwrap();
        std::fs::write(dir.path().join("q.npy"), f32_npy(q, d, &qs)).unwrap();
        Clustered { dir, d, q: qs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build(
        &self,
        out: &str,
        shard_rows: Option<usize>,
        rows: Option<std::ops::Range<usize>>,
    ) -> PathBuf {
        let out = self.path(out);
        index::build(&BuildOptions {
            modalities: vec![
                self.path("v.npy").display().to_string(),
                self.path("a.npy").display().to_string(),
            ],
            out: out.clone(),
            rows,
            shard_rows,
            ann: true,
            progress: false,
        })
        .unwrap();
        out
    }

    /// `gram index build` of v.npy and a.npy into `out`, with `extra` arguments.
    fn cli_build(&self, out: &str, extra: &[&str]) -> String {
        let (v, a, out) = (
            s(&self.path("v.npy")),
            s(&self.path("a.npy")),
            s(&self.path(out)),
        );
        let mut args = vec![
            "index",
            "build",
            "--modality",
            &v,
            "--modality",
            &a,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        ok(gram(&args));
        out
    }

    fn view(&self) -> View<'_> {
        View {
            name: "q.npy",
            rows: self.q.len() / self.d,
            cols: self.d,
            data: &self.q,
        }
    }

    fn exact(&self, idx: &Index, k: usize) -> Vec<Vec<u64>> {
        index::search_keys(idx, self.view(), k, gram_host::commands::Backend::Cpu)
            .unwrap()
            .0
    }

    fn approx(&self, idx: &Index, k: usize, opts: ApproxOptions) -> (Vec<Vec<u64>>, Vec<f64>) {
        let anns = ann::open(idx).unwrap();
        let (hits, _) = ann::search(idx, &anns, self.view(), k, opts).unwrap();
        (hits.keys, hits.bound_sq)
    }
}

/// Share of the exact top-k's k-th volume reached: hits whose volume ≤ the exact k-th.
fn recall(got: &[Vec<u64>], want: &[Vec<u64>], k: usize) -> f64 {
    let vol = |key: u64| gram_host::cpu::topk::unkey(key).1;
    let hits: usize = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            g.iter()
                .filter(|&&x| vol(x) <= vol(w[k - 1]))
                .count()
                .min(k)
        })
        .sum();
    hits as f64 / (k * want.len()) as f64
}

#[test]
fn probing_everything_is_the_exact_search_bit_for_bit() {
    let c = Clustered::new(3000, 40, 24, 1);
    for (name, shard_rows) in [("one", None), ("sharded", Some(700))] {
        let idx = Index::open(&[c.build(name, shard_rows, None)]).unwrap();
        let all = ApproxOptions {
            probe: usize::MAX,
            low_w: usize::MAX,
            rerank: usize::MAX,
        };
        for k in [1, 10] {
            let (keys, bound) = c.approx(&idx, k, all);
            assert_eq!(keys, c.exact(&idx, k), "{name}, k = {k}");
            assert!(bound.iter().all(|b| b.is_infinite()));
            assert!(
                keys.iter()
                    .zip(&bound)
                    .all(|(r, &b)| ann::certified(r, k, b))
            );
        }
    }
}

#[test]
fn a_certified_query_is_the_exact_search_and_recall_rises_with_the_probe() {
    let c = Clustered::new(6000, 200, 16, 2);
    let idx = Index::open(&[c.build("idx", Some(2500), None)]).unwrap();
    let k = 10;
    let want = c.exact(&idx, k);
    let mut certified_any = 0;
    let mut last = 0.0;
    for probe in [1, 4, 16, 64] {
        for rerank in [10, 40, 200] {
            let opts = ApproxOptions {
                probe,
                low_w: 64,
                rerank,
            };
            let (got, bound) = c.approx(&idx, k, opts);
            for (i, (g, b)) in got.iter().zip(&bound).enumerate() {
                if ann::certified(g, k, *b) {
                    assert_eq!(g, &want[i], "query {i} certified at {opts:?} but not exact");
                    certified_any += 1;
                }
            }
            let r = recall(&got, &want, k);
            let cert = got
                .iter()
                .zip(&bound)
                .filter(|(g, b)| ann::certified(g, k, **b))
                .count();
            eprintln!(
                "probe {probe} rerank {rerank}: recall {r:.4}, certified {cert}/{}",
                got.len()
            );
            if rerank == 200 {
                assert!(r >= last - 1e-9, "recall fell to {r} at probe {probe}");
                last = r;
            }
        }
    }
    assert!(last >= 0.99, "recall {last} with 64 cells probed of ~47");
    assert!(certified_any > 0, "no query was ever certified");
}

#[test]
fn rank_deficient_candidates_and_ties_come_out_as_in_the_exact_search() {
    let c = Clustered::new(2000, 30, 12, 3);
    let idx = Index::open(&[c.build("idx", None, None)]).unwrap();
    let (got, _) = c.approx(&idx, 3, ApproxOptions::default());
    for row in &got {
        let ids: Vec<u32> = row
            .iter()
            .map(|&x| gram_host::cpu::topk::unkey(x).0)
            .collect();
        // Volume 0 with every query: 7 and 9 lead, in row order.
        assert_eq!(&ids[..2], &[7, 9], "{ids:?}");
    }
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn the_cli_writes_certificates_and_merges_approximate_parts() {
    let c = Clustered::new(4000, 50, 16, 4);
    let q = s(&c.path("q.npy"));
    c.cli_build("p0", &["--rows", "0:1500", "--ann"]);
    c.cli_build("p1", &["--rows", "1500:4000", "--ann"]);
    let search = |out: &str, parts: &[&str], extra: &[&str]| {
        let out = s(&c.path(out));
        let mut args = vec![
            "search", "--anchor", &q, "--top-k", "5", "--out", &out, "--approx",
        ];
        let paths: Vec<String> = parts.iter().map(|p| s(&c.path(p))).collect();
        for p in &paths {
            args.extend(["--index", p.as_str()]);
        }
        args.extend_from_slice(extra);
        ok(gram(&args))
    };
    let o = search("both", &["p0", "p1"], &["--probe", "8", "--rerank", "20"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("certified exact"));
    search("h0", &["p0"], &["--probe", "8", "--rerank", "20"]);
    search("h1", &["p1"], &["--probe", "8", "--rerank", "20"]);
    let merged = s(&c.path("merged"));
    let (h0, h1) = (s(&c.path("h0")), s(&c.path("h1")));
    ok(gram(&[
        "merge", "--hits", &h0, "--hits", &h1, "--top-k", "5", "--out", &merged,
    ]));
    for f in ["indices.npy", "volumes.npy", "bound.npy", "certified.npy"] {
        let (x, y) = (
            std::fs::read(c.path("both").join(f)).unwrap(),
            std::fs::read(c.path("merged").join(f)).unwrap(),
        );
        assert_eq!(x, y, "{f}: searched together and merged apart differ");
    }
    let cert = std::fs::read(c.path("both").join("certified.npy")).unwrap();
    assert_eq!(cert.len(), 128 + 50, "uint8 [50] after a 128-byte header");
}

#[test]
fn approximate_searches_refuse_what_they_cannot_do() {
    let c = Clustered::new(500, 10, 8, 5);
    let q = s(&c.path("q.npy"));
    let plain = c.cli_build("plain", &[]);
    let out = c.path("out");
    let search = |idx: &str, extra: &[&str]| {
        let mut args = vec![
            "search",
            "--anchor",
            q.as_str(),
            "--top-k",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--index",
            idx,
            "--approx",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let refused = |args: Vec<String>, file: &str, problem: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, &out, file, problem);
    };
    refused(search(&plain, &[]), "shard-00000", "built without --ann");
    let idx = c.build("ann", None, None);
    let idx = s(&idx);
    refused(search(&idx, &["--probe", "0"]), "--probe", "at least 1");
    refused(
        search(&idx, &["--backend", "gpu"]),
        "--backend",
        "CPU backend",
    );
    // A damaged approximate-search file: one byte flipped at the end (in the codes).
    let f = c.path("ann").join("ann-00000.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&f, bytes).unwrap();
    refused(search(&idx, &[]), "ann-00000.safetensors", "checksum");
}
