//! Build settings that depend on the machine the daemon is built on.
//!
//! Relative relocations packed (`DT_RELR`): the binary is position-independent, so at each start
//! the loader writes the load address into every pointer of its tables (vtables, string
//! tables), reading where they are from a list of 24 bytes a pointer: 1.3 MiB, read whole at each
//! start and left resident. Packed, the list is a bitmap of a few kilobytes: a smaller binary,
//! a smaller idle RSS, the same pointers. glibc loads such binaries from 2.36 on (the binary
//! then asks for `GLIBC_ABI_DT_RELR`), so they are packed only when built natively against a glibc
//! that new: a binary built on a system runs on it.
//!
//! Hot functions first: the kernel maps a binary's code into a process 64 KiB at a time around
//! each page it runs, so the two thousand functions a daemon runs at start and at idle, scattered
//! through 13 MiB of code, kept 8 MiB of it resident. `link/symbol-order.txt`
//! (`scripts/symbol-order.sh`) lists them; the linker places them together at the start of the
//! code. Only for release builds linked by rustc's own lld (the default on x86-64 Linux):
//! another linker may not know the option, and a debug build's names differ anyway.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER}");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target == host && target.ends_with("-linux-gnu") && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if release && target == "x86_64-unknown-linux-gnu" && links_with_rust_lld() && order.is_file() {
        // Relative: the linker runs where cargo runs rustc, the package's root. Cargo may reuse
        // this script's output for another checkout sharing the target directory (CI clones),
        // where an absolute path would name a checkout that is gone.
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={ORDER}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The functions to place first, one name a line.
const ORDER: &str = "link/symbol-order.txt";

/// Whether the bins are linked by rustc's own lld: nobody chose a linker (cargo's
/// `target.<triple>.linker`, which it passes on as `RUSTC_LINKER`, a `-C linker...` flag or a
/// `-fuse-ld` handed to the C compiler that drives the link).
fn links_with_rust_lld() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    std::env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("linker")
        && !flags.contains("link-self-contained")
        && !flags.contains("fuse-ld")
}

/// Whether the glibc this build script runs on (the build machine's) is at least this version.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_at_least(major: u32, minor: u32) -> bool {
    unsafe extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a static NUL-terminated string such as "2.36".
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
