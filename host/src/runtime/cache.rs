//! An on-disk cache of compiled guests, so a restart with the same guest
//! does not compile it again.
//!
//! Trust model: an entry is native code that runs in the host process,
//! outside the sandbox, so it is loaded only from a directory the host's
//! effective user owns and no one else can write, and only when it carries
//! a MAC under a key that lives in that directory; anything else is
//! compiled over, never refused at start-up.
//!
//! - The directory is created mode 0700; an existing one (and the key, and
//!   each entry) must be owned by the effective user and not writable by
//!   group or others. Otherwise the cache is off, with one warning.
//! - `key` (32 random bytes, mode 0600) is made once; every entry starts
//!   with HMAC-SHA256 under it of the entry's name and compiled bytes, so a
//!   file planted or copied in from another host, or renamed to another
//!   guest's name, is not loaded.
//! - Entry names hold the component's SHA-256 and a SHA-256 of the engine's
//!   compatibility hash (wasmtime version, target, settings). That hash is
//!   fed through Rust's `Hash` impls, which may change with a Rust or
//!   wasmtime upgrade: the entry's name changes and the guest is compiled
//!   once more, which is all an upgrade costs.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type EntryMac = Hmac<Sha256>;

/// Bytes of the MAC at the start of each entry.
const MAC_BYTES: usize = 32;
/// The key file's name inside the cache directory.
const KEY_FILE: &str = "key";
const KEY_BYTES: usize = 32;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compilation {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored, when the cache is on).
    Compiled,
}

impl Compilation {
    /// The `compilation` field of the `guest loaded` and `guest swapped` log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Compiled => "compiled",
        }
    }
}

/// The compile cache; the default is off.
#[derive(Clone, Default)]
pub struct CompileCache {
    dir: Option<TrustedDir>,
}

/// A cache directory that passed the ownership checks, with its key.
#[derive(Clone)]
struct TrustedDir {
    path: PathBuf,
    key: [u8; KEY_BYTES],
}

impl CompileCache {
    /// The cache in `dir` (`None`: off). A directory that cannot be made
    /// or is not private to this user switches the cache off with one
    /// warning saying why.
    pub fn open(dir: Option<PathBuf>) -> Self {
        let Some(path) = dir else { return Self::default() };
        match TrustedDir::open(path.clone()) {
            Ok(dir) => Self { dir: Some(dir) },
            Err(reason) => {
                tracing::warn!(dir = %path.display(), reason = %format!("{reason:#}"), "compile cache off");
                Self::default()
            }
        }
    }

    /// The component for `bytes` (whose hex SHA-256 is `sha256`).
    pub fn component(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> anyhow::Result<(Component, Compilation)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, bytes)?, Compilation::Compiled));
        };
        let name = format!("{sha256}-{}.cwasm", engine_key(engine));
        match dir.load(engine, &name) {
            Ok(Some(component)) => return Ok((component, Compilation::Cached)),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(entry = %name, reason = %format!("{reason:#}"), "compile cache entry not used; compiling")
            }
        }
        let component = compile(engine, bytes)?;
        if let Err(error) = dir.store(&name, &component) {
            tracing::warn!(dir = %dir.path.display(), error = %format!("{error:#}"), "compile cache not writable");
        }
        Ok((component, Compilation::Compiled))
    }
}

impl TrustedDir {
    fn open(path: PathBuf) -> anyhow::Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .context("cannot create the directory")?;
        let meta = fs::metadata(&path).context("cannot inspect the directory")?;
        anyhow::ensure!(meta.is_dir(), "not a directory");
        check_private(&meta)?;
        let key = read_or_make_key(&path.join(KEY_FILE))?;
        Ok(Self { path, key })
    }

    /// The entry `name`, when present and written by this host.
    fn load(&self, engine: &Engine, name: &str) -> anyhow::Result<Option<Component>> {
        let mut file = match File::open(self.path.join(name)) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).context("cannot open"),
        };
        let meta = file.metadata()?;
        anyhow::ensure!(meta.is_file(), "not a regular file");
        check_private(&meta)?;
        let mut contents = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut contents)?;
        anyhow::ensure!(contents.len() > MAC_BYTES, "truncated");
        let (mac, compiled) = contents.split_at(MAC_BYTES);
        self.mac(name, compiled)
            .verify_slice(mac)
            .map_err(|_| anyhow::anyhow!("not written by this host (its MAC does not match the cache key)"))?;
        // SAFETY: the bytes carry a MAC under a key only this user can read,
        // so this host serialised them from a component it compiled itself;
        // wasmtime still checks the header against the engine.
        let component = unsafe { Component::deserialize(engine, compiled) }.map_err(anyhow::Error::from)?;
        Ok(Some(component))
    }

    /// Writes an entry atomically: readers see the whole file or none.
    fn store(&self, name: &str, component: &Component) -> anyhow::Result<()> {
        let compiled = component.serialize().map_err(anyhow::Error::from)?;
        let mac = self.mac(name, &compiled).finalize().into_bytes();
        let partial = partial_path(&self.path.join(name));
        let mut file = private_file(&partial)?;
        file.write_all(&mac)?;
        file.write_all(&compiled)?;
        drop(file);
        fs::rename(&partial, self.path.join(name))?;
        Ok(())
    }

    /// The MAC of an entry: its name (binding it to one component and
    /// engine) and its compiled bytes.
    fn mac(&self, name: &str, compiled: &[u8]) -> EntryMac {
        let mut mac = EntryMac::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(compiled);
        mac
    }
}

/// The directory's key; made once by whichever host gets there first
/// (linked into place whole, so a concurrent reader never sees half a key).
fn read_or_make_key(path: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    if !path.exists() {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for the cache key: {e}"))?;
        let partial = partial_path(path);
        let mut file = private_file(&partial)?;
        file.write_all(&key)?;
        // Durable before it is linked in: a crash must not leave a short key.
        file.sync_all()?;
        let linked = fs::hard_link(&partial, path);
        fs::remove_file(&partial)?;
        match linked {
            Ok(()) => return Ok(key),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).context("cannot write the cache key"),
        }
    }
    let mut file = File::open(path).context("cannot open the cache key")?;
    let meta = file.metadata()?;
    check_private(&meta).context("the cache key")?;
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & 0o077 == 0,
        "the cache key is readable by group or others (mode {mode:04o})"
    );
    let mut key = [0u8; KEY_BYTES];
    file.read_exact(&mut key).context("the cache key is truncated")?;
    Ok(key)
}

/// A fresh name beside `path` to write it under before it is moved into
/// place. Random, not the process id: in a container the host is always
/// pid 1, and a file left by a killed run must not block the next.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{:016x}", fastrand::u64(..)));
    path.with_file_name(name)
}

/// A new file only this user can read or write.
fn private_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Owned by the effective user and writable by no one else.
fn check_private(meta: &Metadata) -> anyhow::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    anyhow::ensure!(
        meta.uid() == me,
        "owned by uid {}, not by this host's user (uid {me})",
        meta.uid()
    );
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(mode & 0o022 == 0, "writable by group or others (mode {mode:04o})");
    Ok(())
}

fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("not a valid WebAssembly component")
}

/// Changes whenever compiled code from another engine would not load here.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher::default();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// A `Hasher` whose output is SHA-256 of what it was fed: the same for the
/// same input on every run and Rust release, unlike `DefaultHasher`.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
    }
}
