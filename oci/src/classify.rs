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
    /// The Wasm magic with a version wasmpod does not know (a future binary format, or a
    /// damaged header).
    UnknownWasmVersion,
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
                _ => EntrypointKind::UnknownWasmVersion,
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
            EntrypointKind::UnknownWasmVersion => {
                "Wasm of a version wasmpod does not know (it runs core modules, version 1, and \
                 components, version 0x0d)"
            }
            EntrypointKind::Unknown => "neither Wasm nor a native executable",
        }
    }
}

/// The machine an ELF file is built for (`e_machine`, bytes 18-19, in the file's byte order),
/// if `path` is an ELF file with a header.
pub fn elf_machine(path: &Path) -> Option<u16> {
    let mut head = [0u8; 20];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let bytes = [head[18], head[19]];
    Some(match head[5] {
        2 => u16::from_be_bytes(bytes),
        _ => u16::from_le_bytes(bytes),
    })
}

/// The name of an ELF machine number, for the ones a node may meet.
pub fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86 (32-bit)".into(),
        8 => "mips".into(),
        20 => "ppc".into(),
        21 => "ppc64".into(),
        22 => "s390x".into(),
        40 => "arm (32-bit)".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv64".into(),
        258 => "loongarch64".into(),
        other => format!("machine {other}"),
    }
}

/// This build's own ELF machine number, when it is one [`machine_name`] knows.
pub fn host_machine() -> Option<u16> {
    match std::env::consts::ARCH {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "riscv64" => Some(243),
        "s390x" => Some(22),
        "powerpc64" => Some(21),
        "loongarch64" => Some(258),
        _ => None,
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
            EntrypointKind::UnknownWasmVersion
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
