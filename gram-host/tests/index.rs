//! `gram index build`, `gram search --index` and `gram merge` through the binary: hits equal
//! to brute force over the full volume matrix, shards and separately built indexes equal to
//! one index, ties by the smaller row everywhere, and every refusal of a bad index.

mod common;

use common::*;
use std::path::{Path, PathBuf};

struct Corpus {
    dir: tempfile::TempDir,
    n: usize,
}

impl Corpus {
    /// `n` candidates of two modalities and 37 queries in dimension `d`; candidates 5 and 11
    /// duplicate candidate 3, so every query meets exact ties.
    fn new(n: usize, d: usize) -> Corpus {
        let dir = tempfile::tempdir().unwrap();
        let mut v = pseudo(n * d, 1);
        let mut a = pseudo(n * d, 2);
        for dup in [5, 11] {
            v.copy_within(3 * d..4 * d, dup * d);
            a.copy_within(3 * d..4 * d, dup * d);
        }
        std::fs::write(dir.path().join("v.npy"), f32_npy(n, d, &v)).unwrap();
        std::fs::write(dir.path().join("a.npy"), f32_npy(n, d, &a)).unwrap();
        std::fs::write(dir.path().join("q.npy"), f32_npy(37, d, &pseudo(37 * d, 3))).unwrap();
        Corpus { dir, n }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn build(&self, out: &str, extra: &[&str]) -> std::process::Output {
        let (v, a, out) = (self.path("v.npy"), self.path("a.npy"), self.path(out));
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
        gram(&args)
    }

    fn search(&self, indexes: &[&str], k: usize, out: &str, backend: &str) -> std::process::Output {
        let (q, out, k) = (self.path("q.npy"), self.path(out), k.to_string());
        let paths: Vec<String> = indexes.iter().map(|i| self.path(i)).collect();
        let mut args = vec![
            "search",
            "--anchor",
            &q,
            "--top-k",
            &k,
            "--out",
            &out,
            "--backend",
            backend,
        ];
        for p in &paths {
            args.extend(["--index", p.as_str()]);
        }
        gram(&args)
    }

    fn hits(&self, dir: &str) -> (Vec<u32>, Vec<f32>) {
        let p = self.dir.path().join(dir);
        let (_, idx) = read_npy_u32(&p.join("indices.npy"));
        let (_, vol) = read_npy_f32(&p.join("volumes.npy"));
        (idx, vol)
    }
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn index_search_equals_brute_force_and_shards_equal_one_index() {
    let c = Corpus::new(700, 9);
    let k = 12;
    // Brute force: the full volume matrix from `gram score`, ordered by (volume, row).
    let (q, v, a, full) = (
        c.path("q.npy"),
        c.path("v.npy"),
        c.path("a.npy"),
        c.path("full.npy"),
    );
    ok(gram(&[
        "score",
        "--anchor",
        &q,
        "--modality",
        &v,
        "--modality",
        &a,
        "--out",
        &full,
    ]));
    let (_, m) = read_npy_f32(Path::new(&full));
    let mut want = Vec::new();
    for row in m.chunks(c.n) {
        let mut order: Vec<u32> = (0..c.n as u32).collect();
        order.sort_by(|&x, &y| row[x as usize].total_cmp(&row[y as usize]).then(x.cmp(&y)));
        want.extend_from_slice(&order[..k]);
    }
    ok(c.build("one", &[]));
    ok(c.search(&["one"], k, "h-one", "cpu"));
    assert_eq!(c.hits("h-one").0, want);
    // Ties: the duplicates 3, 5, 11 have equal volumes and come out in row order.
    let (idx, vol) = c.hits("h-one");
    for (r, row) in idx.chunks(k).enumerate() {
        let pos: Vec<usize> = [3u32, 5, 11]
            .iter()
            .filter_map(|t| row.iter().position(|x| x == t))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "row {r}: {row:?}");
        for w in pos.windows(2) {
            assert_eq!(vol[r * k + w[0]], vol[r * k + w[1]]);
        }
    }
    // The same corpus in shards of 64 rows, and as three indexes of row ranges built apart
    // (as on three machines): searched together, or searched apart and merged.
    ok(c.build("sharded", &["--shard-rows", "64"]));
    ok(c.search(&["sharded"], k, "h-sharded", "cpu"));
    assert_eq!(c.hits("h-sharded"), c.hits("h-one"));
    for (name, rows) in [("p0", "0:4"), ("p1", "4:300"), ("p2", "300:700")] {
        ok(c.build(name, &["--rows", rows, "--shard-rows", "100"]));
    }
    ok(c.search(&["p2", "p0", "p1"], k, "h-parts", "cpu"));
    assert_eq!(c.hits("h-parts"), c.hits("h-one"));
    let mut merge_args = vec![
        "merge".to_string(),
        "--top-k".into(),
        k.to_string(),
        "--out".into(),
        c.path("h-merged"),
    ];
    for p in ["p0", "p1", "p2"] {
        let out = format!("h-{p}");
        ok(c.search(&[p], 4.min(k), &out, "cpu"));
        merge_args.extend(["--hits".to_string(), c.path(&out)]);
    }
    // Each part kept only its 4 best: the merged 4 best equal the whole index's 4 best.
    let four = merge_args.iter().position(|a| a == "--top-k").unwrap() + 1;
    merge_args[four] = "4".into();
    ok(gram(
        &merge_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (idx, _) = c.hits("h-merged");
    let first4: Vec<u32> = c
        .hits("h-one")
        .0
        .chunks(k)
        .flat_map(|r| r[..4].to_vec())
        .collect();
    assert_eq!(idx, first4);
    // The GPU backend over the stored factors finds the same candidates.
    let (q, out, idx) = (c.path("q.npy"), c.path("h-gpu"), c.path("sharded"));
    if let Some(o) = gram_gpu(&[
        "search",
        "--anchor",
        &q,
        "--index",
        &idx,
        "--top-k",
        "5",
        "--out",
        &out,
        "--backend",
        "gpu",
    ]) {
        ok(o);
        let cpu: Vec<u32> = c
            .hits("h-one")
            .0
            .chunks(k)
            .flat_map(|r| r[..5].to_vec())
            .collect();
        let (gpu, _) = c.hits("h-gpu");
        let same = gpu.iter().zip(&cpu).filter(|(a, b)| a == b).count();
        // The GPU contract is looser than the CPU's (1e-4): near-ties may swap.
        assert!(
            same as f64 >= 0.95 * cpu.len() as f64,
            "{same} of {}",
            cpu.len()
        );
    }
}

/// The one-line refusal of `args`, and that `out` was not created.
fn refused(c: &Corpus, args: &[&str], out: &str, file: &str, problem: &str) {
    assert_refused(args, Path::new(&c.path(out)), file, problem);
}

#[test]
fn bad_indexes_are_refused_with_one_error_line() {
    let c = Corpus::new(50, 4);
    ok(c.build("idx", &["--shard-rows", "20"]));
    let (q, h) = (c.path("q.npy"), c.path("h"));
    let search = |idx: &str| {
        vec![
            "search".to_string(),
            "--anchor".into(),
            q.clone(),
            "--index".into(),
            c.path(idx),
            "--top-k".into(),
            "3".into(),
            "--out".into(),
            h.clone(),
        ]
    };
    let run = |args: Vec<String>, file: &str, problem: &str| {
        refused(
            &c,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            "h",
            file,
            problem,
        )
    };
    let copy = |name: &str| {
        let to = c.dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(c.dir.path().join("idx")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let edit = |dir: &PathBuf, from: &str, to: &str| {
        let p = dir.join("manifest.json");
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains(from), "{from}");
        std::fs::write(&p, s.replacen(from, to, 1)).unwrap();
    };
    run(search("nowhere"), "nowhere", "not a directory");
    std::fs::create_dir_all(c.dir.path().join("empty")).unwrap();
    run(search("empty"), "empty", "not a gram index");
    // Manifests edited by hand: (copy, text, replacement, what the refusal says).
    for (name, from, to, problem) in [
        (
            "foreign",
            "\"gram-index\"",
            "\"other\"",
            "not a gram index manifest",
        ),
        (
            "future",
            "\"version\": 1",
            "\"version\": 7",
            "version 7 is not supported",
        ),
        (
            "extra",
            "\"k\": 3,",
            "\"k\": 3, \"colour\": 1,",
            "malformed manifest",
        ),
        (
            "badrows",
            "\"rows\": 50",
            "\"rows\": 60",
            "the shards hold 50 rows",
        ),
        (
            "escape",
            "\"shard-00000.safetensors\"",
            "\"../idx/shard-00000.safetensors\"",
            "inside the index",
        ),
    ] {
        edit(&copy(name), from, to);
        run(search(name), "manifest.json", problem);
    }
    let d = copy("missing");
    std::fs::remove_file(d.join("shard-00001.safetensors")).unwrap();
    run(search("missing"), "shard-00001.safetensors", "cannot open");
    let d = copy("truncated");
    let s1 = d.join("shard-00001.safetensors");
    let bytes = std::fs::read(&s1).unwrap();
    std::fs::write(&s1, &bytes[..bytes.len() - 8]).unwrap();
    run(search("truncated"), "shard-00001.safetensors", "truncated");
    let d = copy("corrupt");
    let s2 = d.join("shard-00002.safetensors");
    let mut bytes = std::fs::read(&s2).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&s2, &bytes).unwrap();
    run(search("corrupt"), "shard-00002.safetensors", "damaged");
    // A shard replaced by another valid safetensors file whose checksum was also updated:
    // caught by its layout.
    let d = copy("relabelled");
    let foreign = std::fs::read(d.join("shard-00002.safetensors")).unwrap();
    std::fs::write(d.join("shard-00000.safetensors"), &foreign).unwrap();
    let m = std::fs::read_to_string(d.join("manifest.json")).unwrap();
    let sums: Vec<&str> = m
        .match_indices("\"xxh3_64\": \"")
        .map(|(i, _)| &m[i + 12..i + 28])
        .collect();
    let sizes: Vec<&str> = m
        .match_indices("\"bytes\": ")
        .map(|(i, _)| &m[i + 9..i + 9 + m[i + 9..].find(',').unwrap()])
        .collect();
    edit(&d, sums[0], sums[2]);
    edit(
        &d,
        &format!("\"bytes\": {}", sizes[0]),
        &format!("\"bytes\": {}", sizes[2]),
    );
    run(search("relabelled"), "shard-00000.safetensors", "expected");
    // A NaN planted in a shard's vectors, checksum updated to match: refused, naming the shard
    // (not the query, which is finite).
    let d = copy("poisoned");
    let s0 = d.join("shard-00000.safetensors");
    let mut bytes = std::fs::read(&s0).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let start = {
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor(&gram_host::index::modality_tensor(0)).unwrap();
        t.data().as_ptr() as usize - bytes.as_ptr() as usize
    };
    assert!(start >= header);
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let m = std::fs::read_to_string(d.join("manifest.json")).unwrap();
    let i = m.find("\"xxh3_64\": \"").unwrap() + 12;
    let old = m[i..i + 16].to_string();
    std::fs::write(&s0, &bytes).unwrap();
    edit(&d, &old, &gram_host::index::checksum(&bytes));
    run(search("poisoned"), "shard-00000.safetensors", "NaN");
    // Queries of another dimension; indexes of another k or overlapping rows.
    let (v, a) = (c.path("v.npy"), c.path("a.npy"));
    std::fs::write(c.dir.path().join("q5.npy"), f32_npy(2, 5, &pseudo(10, 9))).unwrap();
    let mut wrong_d = search("idx");
    wrong_d[2] = c.path("q5.npy");
    run(wrong_d, "q5.npy", "does not match the index's dimension 4");
    ok(gram(&[
        "index",
        "build",
        "--modality",
        &v,
        "--out",
        &c.path("k2"),
    ]));
    let mut two = search("idx");
    two.extend(["--index".to_string(), c.path("k2")]);
    run(two, "k2", "must match");
    ok(c.build("part", &["--rows", "10:30"]));
    let mut overlap = search("idx");
    overlap.extend(["--index".to_string(), c.path("part")]);
    run(overlap, "overlap", "disjoint rows");
    let mut big_k = search("idx");
    big_k[6] = "51".into();
    run(
        big_k,
        "--top-k 51",
        "between 1 and the number of candidates (50)",
    );
    // Build refusals: a bad row range, an --out holding other data, modalities that differ.
    let build = |extra: &[&str], out: &str| {
        let mut a = vec![
            "index".to_string(),
            "build".into(),
            "--modality".into(),
            v.clone(),
            "--modality".into(),
            a.clone(),
            "--out".into(),
            c.path(out),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_build = |args: Vec<String>, out: &str, file: &str, problem: &str| {
        refused(
            &c,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            out,
            file,
            problem,
        )
    };
    run_build(
        build(&["--rows", "40:60"], "r"),
        "r",
        "--rows 40:60",
        "within the 50 rows",
    );
    run_build(
        build(&["--rows", "7:7"], "r"),
        "r",
        "--rows 7:7",
        "non-empty",
    );
    run_build(
        build(&["--shard-rows", "0"], "r"),
        "r",
        "--shard-rows 0",
        "at least 1",
    );
    std::fs::write(c.dir.path().join("a3.npy"), f32_npy(50, 3, &pseudo(150, 4))).unwrap();
    let mut mismatch = build(&[], "r");
    mismatch[5] = c.path("a3.npy");
    run_build(mismatch, "r", "a3.npy", "shape [50, 3]");
    std::fs::create_dir_all(c.dir.path().join("data")).unwrap();
    std::fs::write(c.dir.path().join("data/keep.txt"), "mine").unwrap();
    let o = gram(
        &build(&[], "data")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a gram index"));
    assert_eq!(
        std::fs::read_to_string(c.dir.path().join("data/keep.txt")).unwrap(),
        "mine"
    );
    // Rebuilding over an index replaces it.
    ok(c.build("idx", &[]));
    // Merge refusals: hit sets of other anchors, the same candidates twice, too large k.
    ok(c.search(&["idx"], 3, "h1", "cpu"));
    let merge = |dirs: &[&str], k: &str| {
        let mut a = vec![
            "merge".to_string(),
            "--top-k".into(),
            k.into(),
            "--out".into(),
            c.path("hm"),
        ];
        for d in dirs {
            a.extend(["--hits".to_string(), c.path(d)]);
        }
        a
    };
    let run_merge = |args: Vec<String>, file: &str, problem: &str| {
        refused(
            &c,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            "hm",
            file,
            problem,
        )
    };
    run_merge(merge(&["h1", "h1"], "3"), "h1", "disjoint candidates");
    run_merge(
        merge(&["h1"], "4"),
        "--top-k 4",
        "hits available per anchor (3)",
    );
    run_merge(merge(&["nothing"], "1"), "indices.npy", "cannot read");
}
