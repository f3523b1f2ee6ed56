//! The two roots the mover works below: `[tusd] upload_dir` and `[storage]
//! root`, canonicalised and opened once, at start (see *Trust* and *Races* in
//! the module docs of `finalize`).

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Mode;

use super::confine::DIR_FLAGS;
use super::error::{FinalizeError, Root};
use crate::config::{Config, ConfigError};

/// The upload directory and the storage root, canonicalised and opened once (at
/// startup).
///
/// Only [`Roots::new`] builds one. Every file below a root is reached from the
/// root's descriptor, never through the path again: the paths serve to match the
/// absolute paths in events and info files, and for messages. Holding the
/// directories open means the mover keeps working in the directories it was
/// started with; replacing one (not its contents) needs a restart.
#[derive(Debug, Clone)]
pub struct Roots {
    pub(super) upload_dir: PathBuf,
    pub(super) storage_root: PathBuf,
    pub(super) upload_fd: Arc<OwnedFd>,
    pub(super) storage_fd: Arc<OwnedFd>,
}

/// The same configured directories (the descriptors are not compared).
impl PartialEq for Roots {
    fn eq(&self, other: &Roots) -> bool {
        self.upload_dir == other.upload_dir && self.storage_root == other.storage_root
    }
}

impl Eq for Roots {}

impl Roots {
    /// The roots when both `[storage] root` and `[tusd] upload_dir` are set
    /// (`None`: uploads are gated, never moved); a root that cannot be resolved
    /// is a configuration error.
    pub fn from_config(config: &Config) -> Result<Option<Roots>, ConfigError> {
        match (&config.storage.root, &config.tusd.upload_dir) {
            (Some(root), Some(uploads)) => Roots::new(uploads, root).map(Some).map_err(|e| {
                ConfigError::new(
                    "storage.root / tusd.upload_dir",
                    format!("{e} ({} / {})", root.display(), uploads.display()),
                )
            }),
            _ => Ok(None),
        }
    }

    /// Canonicalise and open `[tusd] upload_dir` and `[storage] root`. Both must be
    /// absolute paths of existing directories, and neither may contain the other.
    pub fn new(upload_dir: &Path, storage_root: &Path) -> Result<Roots, FinalizeError> {
        let canon = |p: &Path, root: Root| -> Result<PathBuf, FinalizeError> {
            if !p.is_absolute() {
                return Err(FinalizeError::BadRoot { root });
            }
            fs::canonicalize(p).map_err(|_| FinalizeError::BadRoot { root })
        };
        let upload_dir = canon(upload_dir, Root::UploadDir)?;
        let storage_root = canon(storage_root, Root::StorageRoot)?;
        // Nested trees would let a published asset pass for an upload (or tusd
        // write into the served tree).
        if storage_root.starts_with(&upload_dir) || upload_dir.starts_with(&storage_root) {
            return Err(FinalizeError::BadRoot {
                root: Root::StorageRoot,
            });
        }
        // `O_DIRECTORY`: not a directory is a bad root; `O_NOFOLLOW`: the canonical
        // path ends in no symlink, and nothing may have put one there since.
        let open = |p: &Path, root: Root| {
            rustix::fs::open(p, DIR_FLAGS, Mode::empty())
                .map(Arc::new)
                .map_err(|_| FinalizeError::BadRoot { root })
        };
        Ok(Roots {
            upload_fd: open(&upload_dir, Root::UploadDir)?,
            storage_fd: open(&storage_root, Root::StorageRoot)?,
            upload_dir,
            storage_root,
        })
    }

    /// The bytes of the published asset `relative` (`{prefix}/{key}`) under
    /// the storage root, walked from its descriptor by the mover's rule (no
    /// symlink anywhere, plain names only), a regular file of at most `max`
    /// bytes. For `serve --dev`'s downloads; nginx serves them in production.
    pub fn read_published(&self, relative: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        super::confine::read_published(std::os::fd::AsFd::as_fd(&*self.storage_fd), relative, max)
    }

    /// The canonical upload directory.
    pub fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    /// The canonical storage root.
    pub fn storage_root(&self) -> &Path {
        &self.storage_root
    }
}
