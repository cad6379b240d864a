//! The node-wide compile cache: Wasm is compiled at most once per (Wasm bytes, engine
//! configuration) on a node, and every later start maps the compiled code from a file.
//!
//! Rules:
//! - an entry is `<dir>/<key>.cwasm` plus `<key>.sum` (its length and CRC-32); the key is the
//!   SHA-256 of the Wasm, the engine's compatibility hash and the kind, so a new Wasmtime or
//!   another configuration never loads an old entry;
//! - entries are written to a temporary file and renamed into place, and the sum is written
//!   last, so a half-written entry is never used;
//! - one process compiles a key while the others wait on `<key>.lock` (`flock`);
//! - an entry whose bytes do not match its sum, or that Wasmtime refuses, is removed and
//!   compiled again;
//! - only files this cache wrote are ever deserialized;
//! - the directory is kept under `max_bytes` by removing the least recently used entries;
//! - every compile appends its key to `compiles.log`, so operators (and tests) can see
//!   what was compiled when.

use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmpod_oci::WasmKind;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::RuntimeError;

/// The default cache directory.
pub const DEFAULT_DIR: &str = "/var/lib/wasmpod/cache";
/// The default size bound (10 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

/// A compiled artifact loaded (mapped) from the cache.
pub enum Compiled {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
}

/// The cache in one directory.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// The name of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    fn of(engine: &Engine, wasm: &[u8], what: &str) -> CacheKey {
        let digest = hex::encode(Sha256::digest(wasm));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CacheKey(format!("{}-{:016x}-{what}", &digest[..40], h.finish()))
    }

    /// The key as it appears in file names.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn cache_err(what: String) -> RuntimeError {
    RuntimeError::Cache(what)
}

impl CompileCache {
    /// Opens (creating it, mode 0700) the cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<CompileCache, RuntimeError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| cache_err(format!("create {}: {e}", dir.display())))?;
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        Ok(CompileCache { dir, max_bytes })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key for `wasm` compiled as `kind` by `engine`.
    pub fn key(engine: &Engine, wasm: &[u8], kind: WasmKind) -> CacheKey {
        let kind = match kind {
            WasmKind::CoreModule => "module",
            WasmKind::Component => "component",
        };
        CacheKey::of(engine, wasm, kind)
    }

    /// The key for the core module `module` made a component (as a Spin host does) and
    /// compiled by `engine`: named by the module's bytes, so the componentizing is done once
    /// too.
    pub fn componentized_key(engine: &Engine, module: &[u8]) -> CacheKey {
        CacheKey::of(engine, module, "componentized")
    }

    fn entry(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.cwasm", key.0))
    }

    fn sum_file(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.sum", key.0))
    }

    /// Loads the entry for `key`, if there is a sound one. A corrupt or incompatible entry is
    /// removed (and `None` returned, so the caller compiles again).
    pub fn load(&self, engine: &Engine, key: &CacheKey, kind: WasmKind) -> Option<Compiled> {
        let entry = self.entry(key);
        let expected = fs::read_to_string(self.sum_file(key)).ok()?;
        match checksum(&entry) {
            Ok(actual) if actual == expected.trim() => {}
            _ => {
                log::warn!(
                    "compile cache: {} is corrupt; compiling again",
                    entry.display()
                );
                self.remove(key);
                return None;
            }
        }
        // SAFETY: the file was written by this cache (its sum matches what we recorded when
        // we wrote it) and is only ever replaced by rename, never modified in place.
        let loaded = unsafe {
            match kind {
                WasmKind::CoreModule => {
                    Module::deserialize_file(engine, &entry).map(Compiled::Module)
                }
                WasmKind::Component => {
                    Component::deserialize_file(engine, &entry).map(Compiled::Component)
                }
            }
        };
        match loaded {
            Ok(c) => {
                touch(&entry);
                Some(c)
            }
            Err(e) => {
                log::warn!(
                    "compile cache: {} unusable ({e:#}); compiling again",
                    entry.display()
                );
                self.remove(key);
                None
            }
        }
    }

    /// Compiles `wasm` into the entry for `key` unless another process already did; waits for
    /// a compile of the same key in progress elsewhere.
    pub fn compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        kind: WasmKind,
        key: &CacheKey,
    ) -> Result<(), RuntimeError> {
        self.compile_from(engine, kind, key, || Ok(std::borrow::Cow::Borrowed(wasm)))
    }

    /// Like [`CompileCache::compile`], with the Wasm (of `kind`) made by `wasm` only when
    /// the entry is missing (under the key's lock).
    pub fn compile_from<'a>(
        &self,
        engine: &Engine,
        kind: WasmKind,
        key: &CacheKey,
        wasm: impl FnOnce() -> Result<std::borrow::Cow<'a, [u8]>, RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let lock_path = self.dir.join(format!("{}.lock", key.0));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| cache_err(format!("open {}: {e}", lock_path.display())))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(cache_err(format!(
                "lock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            )));
        }
        if self.sound(key) {
            return Ok(());
        }
        let what = match kind {
            WasmKind::CoreModule => "module",
            WasmKind::Component => "component",
        };
        let started = std::time::Instant::now();
        let wasm = wasm()?;
        let bytes = match kind {
            WasmKind::CoreModule => engine.precompile_module(&wasm),
            WasmKind::Component => engine.precompile_component(&crate::wasip3_rc::served(wasm)?),
        }
        .map_err(|e| RuntimeError::Compile {
            what,
            reason: format!("{e:#}"),
        })?;
        let entry = self.entry(key);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", key.0, std::process::id()));
        write_synced(&tmp, &bytes)
            .and_then(|()| fs::rename(&tmp, &entry))
            .map_err(|e| {
                // A full disk must not leave half an entry behind.
                let _ = fs::remove_file(&tmp);
                cache_err(format!("write {}: {e}", entry.display()))
            })?;
        let sum =
            checksum(&entry).map_err(|e| cache_err(format!("read {}: {e}", entry.display())))?;
        let sum_tmp = self
            .dir
            .join(format!(".{}.{}.sumtmp", key.0, std::process::id()));
        write_synced(&sum_tmp, sum.as_bytes())
            .and_then(|()| fs::rename(&sum_tmp, self.sum_file(key)))
            .map_err(|e| {
                let _ = fs::remove_file(&sum_tmp);
                cache_err(format!("write the sum of {}: {e}", entry.display()))
            })?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("compiles.log"))
            .map_err(|e| cache_err(format!("compiles.log: {e}")))?;
        let _ = writeln!(
            log,
            "{} {} bytes in {:?}",
            key.0,
            bytes.len(),
            started.elapsed()
        );
        drop(lock);
        self.evict(key);
        Ok(())
    }

    fn sound(&self, key: &CacheKey) -> bool {
        let Ok(expected) = fs::read_to_string(self.sum_file(key)) else {
            return false;
        };
        checksum(&self.entry(key))
            .map(|s| s == expected.trim())
            .unwrap_or(false)
    }

    fn remove(&self, key: &CacheKey) {
        let _ = fs::remove_file(self.sum_file(key));
        let _ = fs::remove_file(self.entry(key));
    }

    /// Removes the temporary files of compiles that died before renaming them (their writer
    /// is gone), then the least recently used entries (never `keep`) until the cache fits
    /// its bound.
    pub fn evict(&self, keep: &CacheKey) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, String)> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_orphaned_temporary(&name) {
                    log::info!("compile cache: removing {name}, left by a compile that died");
                    let _ = fs::remove_file(e.path());
                    return None;
                }
                let key = name.strip_suffix(".cwasm")?.to_string();
                let md = e.metadata().ok()?;
                Some((md.modified().ok()?, md.len(), key))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, key) in entries {
            if total <= self.max_bytes {
                break;
            }
            if key == keep.0 {
                continue;
            }
            log::info!("compile cache: evicting {key}");
            self.remove(&CacheKey(key.clone()));
            let _ = fs::remove_file(self.dir.join(format!("{key}.lock")));
            total = total.saturating_sub(len);
        }
    }
}

/// Temporary files are `.<key>.<pid>.tmp` and `.<key>.<pid>.sumtmp`; one whose writer no
/// longer runs was left by a compile that was killed.
fn is_orphaned_temporary(name: &str) -> bool {
    temporary_writer(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// The pid in a temporary file's name, if `name` is one.
fn temporary_writer(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let rest = rest
        .strip_suffix(".tmp")
        .or_else(|| rest.strip_suffix(".sumtmp"))?;
    rest.rsplit_once('.')?.1.parse().ok()
}

/// Whether `path` holds Wasmtime-precompiled code (a `.cwasm`), which wasmpod never runs from
/// an image: only code its own cache compiled is loaded.
pub fn is_precompiled(path: &Path) -> bool {
    matches!(Engine::detect_precompiled_file(path), Ok(Some(_)))
}

/// `<length>:<crc32>` of a file.
fn checksum(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(format!("{len}:{:08x}", hasher.finalize()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Marks an entry as used now (the LRU order is the files' mtimes).
fn touch(path: &Path) {
    if let Ok(f) = OpenOptions::new().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm() -> Vec<u8> {
        wat::parse_str(r#"(module (func (export "_start")))"#).unwrap()
    }

    fn engine() -> Engine {
        crate::engine::new_engine(&Default::default()).unwrap()
    }

    #[test]
    fn compile_once_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let engine = engine();
        let key = CompileCache::key(&engine, &wasm(), WasmKind::CoreModule);
        assert!(cache.load(&engine, &key, WasmKind::CoreModule).is_none());
        cache
            .compile(&engine, &wasm(), WasmKind::CoreModule, &key)
            .unwrap();
        cache
            .compile(&engine, &wasm(), WasmKind::CoreModule, &key)
            .unwrap();
        assert!(matches!(
            cache.load(&engine, &key, WasmKind::CoreModule),
            Some(Compiled::Module(_))
        ));
        let log = fs::read_to_string(dir.path().join("compiles.log")).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
    }

    #[test]
    fn keys_differ_by_bytes_and_kind() {
        let engine = engine();
        let a = CompileCache::key(&engine, &wasm(), WasmKind::CoreModule);
        let b = CompileCache::key(&engine, b"other", WasmKind::CoreModule);
        let c = CompileCache::key(&engine, &wasm(), WasmKind::Component);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, CompileCache::key(&engine, &wasm(), WasmKind::CoreModule));
    }

    #[test]
    fn corrupt_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let engine = engine();
        let key = CompileCache::key(&engine, &wasm(), WasmKind::CoreModule);
        cache
            .compile(&engine, &wasm(), WasmKind::CoreModule, &key)
            .unwrap();
        let entry = cache.entry(&key);
        let mut bytes = fs::read(&entry).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&entry, &bytes).unwrap();
        assert!(cache.load(&engine, &key, WasmKind::CoreModule).is_none());
        assert!(!entry.exists(), "the corrupt entry is removed");
        cache
            .compile(&engine, &wasm(), WasmKind::CoreModule, &key)
            .unwrap();
        assert!(cache.load(&engine, &key, WasmKind::CoreModule).is_some());
    }

    #[test]
    fn recognises_precompiled_files() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cwasm = dir.path().join("x.cwasm");
        fs::write(&cwasm, engine.precompile_module(&wasm()).unwrap()).unwrap();
        assert!(is_precompiled(&cwasm));
        let plain = dir.path().join("x.wasm");
        fs::write(&plain, wasm()).unwrap();
        assert!(!is_precompiled(&plain));
    }

    #[test]
    fn temporaries_of_dead_compiles_are_swept() {
        assert_eq!(temporary_writer(".abc-1-module.4242.tmp"), Some(4242));
        assert_eq!(temporary_writer(".abc-1-module.7.sumtmp"), Some(7));
        assert_eq!(temporary_writer("abc-1-module.cwasm"), None);
        assert_eq!(temporary_writer(".abc.tmp"), None);
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        // A pid above the kernel's limit never runs; this process does.
        let dead = dir.path().join(".k-0-module.4294967.tmp");
        let live = dir
            .path()
            .join(format!(".k-0-module.{}.tmp", std::process::id()));
        fs::write(&dead, b"half").unwrap();
        fs::write(&live, b"in progress").unwrap();
        let engine = engine();
        let key = CompileCache::key(&engine, &wasm(), WasmKind::CoreModule);
        cache
            .compile(&engine, &wasm(), WasmKind::CoreModule, &key)
            .unwrap();
        assert!(!dead.exists(), "an orphaned temporary file stays");
        assert!(live.exists(), "a compile in progress lost its file");
    }

    #[test]
    fn stays_under_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path(), 1).unwrap();
        let engine = engine();
        let first = wasm();
        let second = wat::parse_str(r#"(module (func (export "_start") nop))"#).unwrap();
        let k1 = CompileCache::key(&engine, &first, WasmKind::CoreModule);
        let k2 = CompileCache::key(&engine, &second, WasmKind::CoreModule);
        cache
            .compile(&engine, &first, WasmKind::CoreModule, &k1)
            .unwrap();
        cache
            .compile(&engine, &second, WasmKind::CoreModule, &k2)
            .unwrap();
        assert!(!cache.entry(&k1).exists(), "the older entry is evicted");
        assert!(cache.entry(&k2).exists(), "the newest entry stays");
    }
}
