//! The audit file: appended to, rotated to `PATH.1` past a size, created
//! 0600 and never opened through a symbolic link.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The audit file, rotated past a size.
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) written: u64,
    pub(super) max_bytes: u64,
    /// Rotations that failed (the rename or the reopen): the records go on
    /// into the file at hand, and the next write tries again.
    pub(super) rotate_failures: u64,
    /// Records lost since the last write that succeeded (a full disk), and
    /// the error of the first of them: the next write that succeeds first
    /// writes a `lost` record that marks the gap.
    pub(super) losing: Option<(u64, String)>,
}

/// Open the audit file for appending: created 0600, and never through a
/// symbolic link (O_NOFOLLOW), so a link planted at its path cannot point
/// the daemon's writes at another file.
pub(super) fn open_audit(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

impl Sink {
    pub(super) fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            match self.rotate() {
                Ok(()) => self.rotate_failures = 0,
                Err(err) => {
                    self.rotate_failures += 1;
                    tracing::error!(
                        "cannot rotate the audit log {} ({err}; {} failed in a row): records go on into the file at hand, and the next record tries again",
                        self.path.display(),
                        self.rotate_failures
                    );
                }
            }
        }
        if let Err(err) = self.file.write_all(line) {
            // A full disk takes part of a line: cut it off again, so the
            // next record starts on a line of its own instead of after a
            // torn one (if the truncation fails too, the reader skips one
            // unparsable line).
            let _ = self.file.set_len(self.written);
            return Err(err);
        }
        self.written += line.len() as u64;
        Ok(())
    }

    /// Move the file to `path.1` (unless an earlier attempt did and then
    /// failed to reopen) and start a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        if std::fs::symlink_metadata(&self.path).is_ok() {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
        }
        self.file = open_audit(&self.path)?;
        self.written = 0;
        Ok(())
    }
}
