//! Finding `args[0]` inside a container's rootfs, the way an exec inside the container would:
//! an absolute path, a path relative to the working directory, or a bare name looked up in
//! `PATH`. Symlinks are followed with the rootfs as `/`, so a link can never escape it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use crate::OciError;

/// The `PATH` used when the spec's environment has none (the same default as runc's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MAX_SYMLINKS: usize = 40;

/// An entrypoint found in a rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEntrypoint {
    /// The path as the container sees it (absolute, symlinks resolved).
    pub in_container: PathBuf,
    /// The same file as seen from the host (`rootfs` joined with `in_container`).
    pub on_host: PathBuf,
}

/// Resolves `arg0` in `rootfs` given the container's `cwd` and `PATH` value.
pub fn resolve_entrypoint(
    rootfs: &Path,
    arg0: &str,
    cwd: &str,
    path_env: Option<&str>,
) -> Result<ResolvedEntrypoint, OciError> {
    if arg0.is_empty() {
        return Err(OciError::NoArgs);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if arg0.contains('/') {
        if arg0.starts_with('/') {
            candidates.push(PathBuf::from(arg0));
        } else {
            candidates.push(Path::new(cwd_or_root(cwd)).join(arg0));
        }
    } else {
        for dir in path_env.unwrap_or(DEFAULT_PATH).split(':') {
            if dir.is_empty() {
                continue;
            }
            let dir = if dir.starts_with('/') {
                PathBuf::from(dir)
            } else {
                Path::new(cwd_or_root(cwd)).join(dir)
            };
            candidates.push(dir.join(arg0));
        }
        // Wasm images are often `FROM scratch` with a bare file name: look next to the cwd last.
        candidates.push(Path::new(cwd_or_root(cwd)).join(arg0));
    }
    for candidate in candidates {
        let in_container = match resolve_in_root(rootfs, &candidate) {
            Ok(p) => p,
            Err(OciError::SymlinkLoop(p)) => return Err(OciError::SymlinkLoop(p)),
            Err(_) => continue,
        };
        let on_host = host_path(rootfs, &in_container);
        match std::fs::metadata(&on_host) {
            Ok(md) if md.is_file() => {
                return Ok(ResolvedEntrypoint {
                    in_container,
                    on_host,
                })
            }
            Ok(_) if arg0.contains('/') => {
                return Err(OciError::EntrypointNotAFile(arg0.to_string()))
            }
            _ => continue,
        }
    }
    Err(OciError::EntrypointNotFound(arg0.to_string()))
}

fn cwd_or_root(cwd: &str) -> &str {
    if cwd.starts_with('/') {
        cwd
    } else {
        "/"
    }
}

/// `rootfs` joined with an absolute in-container path.
pub fn host_path(rootfs: &Path, in_container: &Path) -> PathBuf {
    let rel = in_container.strip_prefix("/").unwrap_or(in_container);
    rootfs.join(rel)
}

/// Resolves every symlink of `path` (absolute, in-container) with `rootfs` as `/`. `..` never
/// climbs above the root. The last component need not exist.
pub fn resolve_in_root(rootfs: &Path, path: &Path) -> Result<PathBuf, OciError> {
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<std::ffi::OsString> = components_of(path);
    pending.reverse();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&part);
        let on_host = host_path(rootfs, &next);
        match std::fs::symlink_metadata(&on_host) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(OciError::SymlinkLoop(path.display().to_string()));
                }
                let target =
                    std::fs::read_link(&on_host).map_err(OciError::io("readlink", &on_host))?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut more = components_of(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && pending.is_empty() => {
                resolved = next
            }
            Err(e) => return Err(OciError::io("stat", on_host)(e)),
        }
    }
    Ok(resolved)
}

/// Makes sure the directory `dir` (absolute, in-container) exists in `rootfs`, creating what
/// is missing (mode 0755), as runc does for a container's working directory; symlinks are
/// followed inside the root. The error says which part is not a directory.
pub fn ensure_dir(rootfs: &Path, dir: &Path) -> Result<PathBuf, OciError> {
    let not_a_dir = |reason: String| OciError::Cwd {
        cwd: dir.display().to_string(),
        reason,
    };
    let mut current = PathBuf::from("/");
    for part in components_of(dir) {
        let resolved = resolve_in_root(rootfs, &current.join(&part))?;
        let on_host = host_path(rootfs, &resolved);
        match std::fs::metadata(&on_host) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(not_a_dir(format!(
                    "{} is not a directory",
                    resolved.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&on_host)
                    .map_err(|e| not_a_dir(format!("cannot create {}: {e}", resolved.display())))?;
            }
            Err(e) => return Err(OciError::io("stat", on_host)(e)),
        }
        current = resolved;
    }
    Ok(current)
}

fn components_of(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("app/sub")).unwrap();
        std::fs::write(r.join("usr/bin/tool.wasm"), b"x").unwrap();
        std::fs::write(r.join("app/main.wasm"), b"x").unwrap();
        std::fs::write(r.join("hello.wasm"), b"x").unwrap();
        symlink("/usr/bin/tool.wasm", r.join("app/abs-link")).unwrap();
        symlink("../main.wasm", r.join("app/sub/rel-link")).unwrap();
        symlink("../../../../../../etc/passwd", r.join("app/escape")).unwrap();
        symlink("loop2", r.join("app/loop1")).unwrap();
        symlink("loop1", r.join("app/loop2")).unwrap();
        dir
    }

    #[test]
    fn working_directories_are_made_inside_the_root() {
        let root = rootfs();
        let r = root.path();
        assert_eq!(
            ensure_dir(r, Path::new("/app/sub")).unwrap(),
            Path::new("/app/sub")
        );
        assert_eq!(
            ensure_dir(r, Path::new("/work/a/b")).unwrap(),
            Path::new("/work/a/b")
        );
        assert!(r.join("work/a/b").is_dir());
        // Through a symlink, still inside the root.
        symlink("/srv", r.join("app/srv-link")).unwrap();
        ensure_dir(r, Path::new("/app/srv-link/x")).unwrap();
        assert!(r.join("srv/x").is_dir());
        let err = ensure_dir(r, Path::new("/hello.wasm/x")).unwrap_err();
        assert!(
            err.to_string().contains("/hello.wasm is not a directory"),
            "{err}"
        );
    }

    #[test]
    fn absolute_and_relative() {
        let r = rootfs();
        let e = resolve_entrypoint(r.path(), "/app/main.wasm", "/", None).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/app/main.wasm"));
        assert_eq!(e.on_host, r.path().join("app/main.wasm"));
        let e = resolve_entrypoint(r.path(), "./main.wasm", "/app", None).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/app/main.wasm"));
        let e = resolve_entrypoint(r.path(), "sub/../main.wasm", "/app", None).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/app/main.wasm"));
    }

    #[test]
    fn path_lookup_then_cwd() {
        let r = rootfs();
        let e = resolve_entrypoint(r.path(), "tool.wasm", "/", None).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/usr/bin/tool.wasm"));
        let e = resolve_entrypoint(r.path(), "tool.wasm", "/", Some("/nowhere:/usr/bin")).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/usr/bin/tool.wasm"));
        let e = resolve_entrypoint(r.path(), "hello.wasm", "/", Some("/nowhere")).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/hello.wasm"));
        let e = resolve_entrypoint(r.path(), "main.wasm", "/app", Some("/nowhere")).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/app/main.wasm"));
    }

    #[test]
    fn symlinks_stay_inside_rootfs() {
        let r = rootfs();
        let e = resolve_entrypoint(r.path(), "/app/abs-link", "/", None).unwrap();
        assert_eq!(e.on_host, r.path().join("usr/bin/tool.wasm"));
        let e = resolve_entrypoint(r.path(), "/app/sub/rel-link", "/", None).unwrap();
        assert_eq!(e.in_container, PathBuf::from("/app/main.wasm"));
        // Escaping links are clamped at the root: /etc/passwd inside the rootfs does not exist.
        assert!(matches!(
            resolve_entrypoint(r.path(), "/app/escape", "/", None),
            Err(OciError::EntrypointNotFound(_))
        ));
        assert!(matches!(
            resolve_entrypoint(r.path(), "/app/loop1", "/", None),
            Err(OciError::SymlinkLoop(_))
        ));
    }

    #[test]
    fn errors() {
        let r = rootfs();
        assert!(matches!(
            resolve_entrypoint(r.path(), "", "/", None),
            Err(OciError::NoArgs)
        ));
        assert!(matches!(
            resolve_entrypoint(r.path(), "/missing.wasm", "/", None),
            Err(OciError::EntrypointNotFound(_))
        ));
        assert!(matches!(
            resolve_entrypoint(r.path(), "/app", "/", None),
            Err(OciError::EntrypointNotAFile(_))
        ));
    }
}
