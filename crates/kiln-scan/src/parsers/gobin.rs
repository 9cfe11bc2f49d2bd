//! Go binaries' build information (Go 1.18 and later): the `\xff Go buildinf:` header and
//! the module lines (`mod`, `dep`, `=>`) of `debug/buildinfo`.

use super::package;
use crate::{Ecosystem, Package};

/// The magic that starts the build info blob.
pub(crate) const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Whether these bytes look like an executable worth searching (ELF).
pub(crate) fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// The Go modules a binary was built from, with the Go standard library as `stdlib`; empty
/// when the binary has no (inline, Go 1.18+) build info.
pub(crate) fn parse(path: &str, bytes: &[u8]) -> Vec<Package> {
    let Some(at) = memchr::memmem::find(bytes, MAGIC) else {
        return Vec::new();
    };
    // Header: 14 bytes magic, pointer size, flags; 32 bytes in all.
    let Some(header) = bytes.get(at..at + 32) else {
        return Vec::new();
    };
    let flags = header[15];
    if flags & 0x2 == 0 {
        // Before Go 1.18 the strings sit behind pointers: not read.
        return Vec::new();
    }
    let mut rest = &bytes[at + 32..];
    let Some(go_version) = varint_bytes(&mut rest) else {
        return Vec::new();
    };
    let go_version = String::from_utf8_lossy(go_version);
    let Some(mut mod_info) = varint_bytes(&mut rest) else {
        return Vec::new();
    };
    // The module text is wrapped in two 16-byte sentinels.
    if mod_info.len() >= 33 && mod_info[mod_info.len() - 17] == b'\n' {
        mod_info = &mod_info[16..mod_info.len() - 16];
    }
    let mod_info = String::from_utf8_lossy(mod_info);
    let mut out = Vec::new();
    if let Some(v) = go_version.strip_prefix("go") {
        // `go1.21.5`, maybe with ` X:...` experiments after it.
        let v = v.split_whitespace().next().unwrap_or(v);
        out.push(package(Ecosystem::Go, "stdlib", &format!("v{v}"), path));
    }
    // Lines of tab-separated fields.
    let mut last: Option<usize> = None;
    for line in mod_info.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", name, version, ..] if version.starts_with('v') => {
                out.push(package(Ecosystem::Go, name, version, path));
                last = Some(out.len() - 1);
            }
            ["=>", name, version, ..] if version.starts_with('v') => {
                if let Some(i) = last {
                    out[i] = package(Ecosystem::Go, name, version, path);
                }
            }
            _ => last = None,
        }
    }
    out.sort();
    out.dedup();
    out
}

fn varint_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let s = rest.get(..len)?;
    *rest = &rest[len..];
    Some(s)
}
