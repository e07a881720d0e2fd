//! Pretrained encoder folders named by Hugging Face model id (`ORG/NAME[@REVISION]`), found in
//! the local Hub cache that `huggingface-cli download` and `from_pretrained` fill — never over
//! the network.
//!
//! The cache layout (`models--ORG--NAME/refs/REVISION` holding a commit hash,
//! `snapshots/HASH/` holding the files) is read by the `hf-hub` crate (without its download
//! features). Where the cache is, as `huggingface_hub` decides it: `$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (hf-hub
//! itself reads only `HF_HOME`, so the first and third are resolved here).

use crate::error::Error;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// `path` itself when it is a folder; else, when it reads as a model id, that model's snapshot
/// folder in the local Hub cache ([`cache_dir`]); else `path` unchanged (the caller's read of
/// `config.json` then names it). A model id absent from the cache is an error naming where it
/// was looked for.
pub fn resolve_folder(path: &Path) -> Result<PathBuf, Error> {
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    match path.to_str().and_then(model_id) {
        Some((id, revision)) => {
            let cache = cache_dir(|k| std::env::var(k).ok());
            find_in(&cache, id, revision)
        }
        None => Ok(path.to_path_buf()),
    }
}

/// `ORG/NAME` or `NAME`, with an optional `@REVISION` (branch, tag or commit hash), when `s`
/// has that shape: no leading `.`, `/` or `~`, at most one `/`, and only the characters Hub
/// ids use.
fn model_id(s: &str) -> Option<(&str, Option<&str>)> {
    let (id, revision) = match s.split_once('@') {
        Some((i, r)) if !r.is_empty() => (i, Some(r)),
        Some(_) => return None,
        None => (s, None),
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let parts: Vec<&str> = id.split('/').collect();
    let shaped = parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(ok_char))
        && !id.starts_with('.');
    shaped.then_some((id, revision))
}

/// The Hub cache folder from the environment (`get` reads a variable).
pub fn cache_dir(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| get(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = set("HF_HOME") {
        return Path::new(&home).join("hub");
    }
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        return Path::new(&xdg).join("huggingface").join("hub");
    }
    // hf-hub's `Cache::default` panics without a home folder; a relative path then names
    // where it looked in the error instead.
    let home = set("HOME")
        .or_else(|| set("USERPROFILE"))
        .unwrap_or_default();
    Path::new(&home)
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// The snapshot folder of model `id` at `revision` (default `main`) in the cache at `cache`.
pub fn find_in(cache: &Path, id: &str, revision: Option<&str>) -> Result<PathBuf, Error> {
    let rev = revision.unwrap_or("main");
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, rev.to_string());
    let folder = cache.join(repo.folder_name());
    let is_hash = rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
    let config = if is_hash {
        Some(folder.join("snapshots").join(rev).join("config.json")).filter(|p| p.is_file())
    } else {
        Cache::new(cache.to_path_buf())
            .repo(repo)
            .get("config.json")
    };
    match config.as_deref().and_then(Path::parent) {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Err(Error::config(format!(
            "'{id}' (revision {rev}) is neither a folder nor a model in the local Hugging Face \
             cache: no config.json under {}/snapshots/ for that revision (the cache is \
             $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub; nothing is downloaded: \
             fetch it with `huggingface-cli download {id}`)",
            folder.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache holding `org/tiny` at two commits, `main` pointing at the second.
    fn cache() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--tiny");
        for hash in ["a".repeat(40), "b".repeat(40)] {
            let snap = repo.join("snapshots").join(&hash);
            std::fs::create_dir_all(&snap).unwrap();
            std::fs::write(
                snap.join("config.json"),
                format!("{{\"hash\": \"{hash}\"}}"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "b".repeat(40)).unwrap();
        std::fs::write(repo.join("refs/old"), "a".repeat(40)).unwrap();
        dir
    }

    #[test]
    fn ids_resolve_through_refs_and_hashes() {
        let c = cache();
        let snap = |h: &str| {
            c.path()
                .join("models--org--tiny/snapshots")
                .join(h.repeat(40))
        };
        assert_eq!(find_in(c.path(), "org/tiny", None).unwrap(), snap("b"));
        assert_eq!(
            find_in(c.path(), "org/tiny", Some("old")).unwrap(),
            snap("a")
        );
        assert_eq!(
            find_in(c.path(), "org/tiny", Some(&"a".repeat(40))).unwrap(),
            snap("a")
        );
        let e = find_in(c.path(), "org/absent", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("models--org--absent") && e.contains("huggingface-cli download org/absent"),
            "{e}"
        );
        assert!(find_in(c.path(), "org/tiny", Some("nobranch")).is_err());
    }

    #[test]
    fn what_reads_as_a_model_id() {
        assert_eq!(
            model_id("MIT/ast-finetuned-audioset-10-10-0.4593"),
            Some(("MIT/ast-finetuned-audioset-10-10-0.4593", None))
        );
        assert_eq!(
            model_id("bert-base-uncased@v1.0"),
            Some(("bert-base-uncased", Some("v1.0")))
        );
        for not_id in [
            "/abs/dir", "./rel", "../up", "a/b/c", "~/m", "org/", "org/x@", "a b",
        ] {
            assert_eq!(model_id(not_id), None, "{not_id}");
        }
    }

    #[test]
    fn the_cache_folder_follows_huggingface_hub() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        const BOTH: [(&str, &str); 3] = [
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
        ];
        assert_eq!(cache_dir(env(&BOTH)), PathBuf::from("/c"));
        assert_eq!(cache_dir(env(&BOTH[1..])), PathBuf::from("/h/hub"));
        assert_eq!(
            cache_dir(env(&BOTH[2..])),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            cache_dir(env(&[("HOME", "/home/u")])),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
    }
}
