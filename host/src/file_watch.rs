//! Following a file that operators replace while Inlet serves: the guest
//! component, the webhook secrets, the API keys.
//!
//! The file is polled rather than watched through inotify, so a replace by
//! rename, `docker cp`, an in-place write and a Kubernetes secret's symlink
//! swap are all seen, on any filesystem. A change is reported once the file
//! has held still for one more poll, so a file being written is not read
//! half-way (mostly: a reader must still cope with a torn file).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// How often the operator's settings files (the webhook secrets, the API
/// keys) are checked: a change applies within about twice this, since a
/// changed file must also hold still for one more poll.
pub const SETTINGS_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A version of the file: a rename gives a new inode, a write a new size or
/// modification time. `None` when the file is absent or unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Option<(u64, i64, i64, u64)>);

impl Stamp {
    /// The file's version now.
    pub fn of(path: &Path) -> Self {
        Self(
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.size())),
        )
    }
}

/// Whether a file's disappearance is a change to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// Wait for the file to come back (a guest is only ever replaced).
    Ignored,
    /// Report it, so that the reader can say the file cannot be read.
    Reported,
}

/// Polls one file for changes.
pub struct FileWatch {
    path: PathBuf,
    interval: Duration,
    absence: Absence,
    seen: Stamp,
    ticks: Interval,
}

impl FileWatch {
    /// Follows `path` every `interval`, from the version `seen` (taken
    /// before the file was first read, so that a change right after is not
    /// missed).
    pub fn from(path: &Path, seen: Stamp, interval: Duration, absence: Absence) -> Self {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            path: path.to_owned(),
            interval,
            absence,
            seen,
            ticks,
        }
    }

    /// Returns once the file differs from the version last seen and has
    /// held still for one more poll; that version is then the one seen.
    pub async fn changed(&mut self) {
        loop {
            self.ticks.tick().await;
            let now = Stamp::of(&self.path);
            if now == self.seen || (now.0.is_none() && self.absence == Absence::Ignored) {
                continue;
            }
            tokio::time::sleep(self.interval).await;
            if Stamp::of(&self.path) == now {
                self.seen = now;
                return;
            }
        }
    }

    /// Takes the file's version now as seen (it was read for another reason).
    pub fn rescan(&mut self) {
        self.seen = Stamp::of(&self.path);
    }
}
