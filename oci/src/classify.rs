//! Classifying an entrypoint by its first bytes: Wasm core module, Wasm component, or a native
//! program (ELF binary or `#!` script).

use std::io::Read;
use std::path::Path;

use crate::OciError;

/// The two kinds of Wasm binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WasmKind {
    /// A core module (`\0asm` version 1): WASI preview1.
    CoreModule,
    /// A component (`\0asm` version `0x0d 0x00 0x01 0x00`): WASI 0.2.
    Component,
}

/// The two kinds of native programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NativeKind {
    /// An ELF executable.
    Elf,
    /// A script starting with `#!`.
    Script,
}

/// What an entrypoint file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntrypointKind {
    /// Wasm, to be run by the Wasm runtime.
    Wasm(WasmKind),
    /// A native Linux program, to be executed as an ordinary container.
    Native(NativeKind),
    /// Neither: the container cannot run.
    Unknown,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

impl EntrypointKind {
    /// Classifies the first bytes of a file (8 are enough; fewer give `Unknown` or `Native`).
    pub fn of_bytes(head: &[u8]) -> EntrypointKind {
        if head.len() >= 8 && &head[..4] == WASM_MAGIC {
            let version = [head[4], head[5], head[6], head[7]];
            return match version {
                CORE_VERSION => EntrypointKind::Wasm(WasmKind::CoreModule),
                COMPONENT_VERSION => EntrypointKind::Wasm(WasmKind::Component),
                _ => EntrypointKind::Unknown,
            };
        }
        if head.len() >= 4 && &head[..4] == b"\x7fELF" {
            return EntrypointKind::Native(NativeKind::Elf);
        }
        if head.len() >= 2 && &head[..2] == b"#!" {
            return EntrypointKind::Native(NativeKind::Script);
        }
        EntrypointKind::Unknown
    }

    /// Reads the first bytes of `path` and classifies them.
    pub fn of_file(path: &Path) -> Result<EntrypointKind, OciError> {
        let mut file = std::fs::File::open(path).map_err(OciError::io("open", path))?;
        let mut head = [0u8; 8];
        let mut filled = 0;
        while filled < head.len() {
            let n = file
                .read(&mut head[filled..])
                .map_err(OciError::io("read", path))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(EntrypointKind::of_bytes(&head[..filled]))
    }

    /// A short human name, used in messages.
    pub fn describe(&self) -> &'static str {
        match self {
            EntrypointKind::Wasm(WasmKind::CoreModule) => "Wasm core module",
            EntrypointKind::Wasm(WasmKind::Component) => "Wasm component",
            EntrypointKind::Native(NativeKind::Elf) => "native ELF executable",
            EntrypointKind::Native(NativeKind::Script) => "native script",
            EntrypointKind::Unknown => "neither Wasm nor a native executable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_magic() {
        assert_eq!(
            EntrypointKind::of_bytes(b"\0asm\x01\0\0\0rest"),
            EntrypointKind::Wasm(WasmKind::CoreModule)
        );
        assert_eq!(
            EntrypointKind::of_bytes(b"\0asm\x0d\0\x01\0"),
            EntrypointKind::Wasm(WasmKind::Component)
        );
        assert_eq!(
            EntrypointKind::of_bytes(b"\0asm\x02\0\0\0"),
            EntrypointKind::Unknown
        );
        assert_eq!(
            EntrypointKind::of_bytes(b"\x7fELF\x02\x01\x01\0"),
            EntrypointKind::Native(NativeKind::Elf)
        );
        assert_eq!(
            EntrypointKind::of_bytes(b"#!/bin/sh\n"),
            EntrypointKind::Native(NativeKind::Script)
        );
        assert_eq!(
            EntrypointKind::of_bytes(b"hello world"),
            EntrypointKind::Unknown
        );
        assert_eq!(EntrypointKind::of_bytes(b"\0as"), EntrypointKind::Unknown);
        assert_eq!(EntrypointKind::of_bytes(b""), EntrypointKind::Unknown);
    }

    #[test]
    fn classifies_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.wasm");
        std::fs::write(&p, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(
            EntrypointKind::of_file(&p).unwrap(),
            EntrypointKind::Wasm(WasmKind::CoreModule)
        );
        let short = dir.path().join("short");
        std::fs::write(&short, b"\0a").unwrap();
        assert_eq!(
            EntrypointKind::of_file(&short).unwrap(),
            EntrypointKind::Unknown
        );
        assert!(EntrypointKind::of_file(&dir.path().join("missing")).is_err());
    }
}
