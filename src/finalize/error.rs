//! Why a move failed: one error type, its metric label and its log text.

use std::io;

/// The metric label of a failed finalize (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A configured root is missing or not a directory.
    BadRoot,
    /// The source does not resolve inside the upload directory.
    SourceOutside,
    /// The source is not a regular file with a single link.
    SourceNotFile,
    /// The source does not exist and neither does the destination.
    SourceMissing,
    /// A symlink where a real file or directory is required.
    Symlink,
    /// The upload server's info says the upload is not complete (or is partial).
    NotFinished,
    /// No usable info file describes the source.
    InfoInvalid,
    /// The on-disk metadata differs from what the caller verified.
    MetadataMismatch,
    /// The destination is not a plain relative path below the storage root.
    DestinationOutside,
    /// An existing component of the destination path is not a directory.
    DestinationNotDir,
    /// The destination exists and overwrite is off (a conflict).
    Exists,
    /// The leading bytes contradict the declared content type.
    ContentMismatch,
    /// A part of a final upload is not this token's finished partial upload.
    ConcatInvalid,
    /// The data file or its info is not the upload the plan's ID names.
    IdMismatch,
    /// The upload was refused for good earlier (its `<ID>.refused` marker).
    Refused,
    /// The daemon's shutdown grace ran out during the copy.
    Cancelled,
    /// An I/O error.
    Io,
}

impl Reason {
    /// All values, for metric pre-registration.
    pub const ALL: [Reason; 17] = [
        Reason::BadRoot,
        Reason::SourceOutside,
        Reason::SourceNotFile,
        Reason::SourceMissing,
        Reason::Symlink,
        Reason::NotFinished,
        Reason::InfoInvalid,
        Reason::MetadataMismatch,
        Reason::DestinationOutside,
        Reason::DestinationNotDir,
        Reason::Exists,
        Reason::ContentMismatch,
        Reason::ConcatInvalid,
        Reason::IdMismatch,
        Reason::Refused,
        Reason::Cancelled,
        Reason::Io,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRoot => "bad_root",
            Reason::SourceOutside => "source_outside",
            Reason::SourceNotFile => "source_not_file",
            Reason::SourceMissing => "source_missing",
            Reason::Symlink => "symlink",
            Reason::NotFinished => "not_finished",
            Reason::InfoInvalid => "info_invalid",
            Reason::MetadataMismatch => "metadata_mismatch",
            Reason::DestinationOutside => "destination_outside",
            Reason::DestinationNotDir => "destination_not_dir",
            Reason::Exists => "exists",
            Reason::ContentMismatch => "content_mismatch",
            Reason::ConcatInvalid => "concat_invalid",
            Reason::IdMismatch => "id_mismatch",
            Reason::Refused => "refused",
            Reason::Cancelled => "cancelled",
            Reason::Io => "io",
        }
    }
}

/// Which configured root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `[tusd] upload_dir`
    UploadDir,
    /// `[storage] root`
    StorageRoot,
}

impl Root {
    /// Its configuration key, for [`FinalizeError::BadRoot`]'s message.
    fn config_key(self) -> &'static str {
        match self {
            Root::UploadDir => "tusd.upload_dir",
            Root::StorageRoot => "storage.root",
        }
    }
}

/// Where a refused symlink was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The upload's data file.
    Source,
    /// The upload's `.info` file.
    Info,
    /// The destination or one of its directories.
    Destination,
}

impl Side {
    /// The path it names, for [`FinalizeError::Symlink`]'s message.
    fn path(self) -> &'static str {
        match self {
            Side::Source => "upload's path",
            Side::Info => "upload's info file path",
            Side::Destination => "destination path",
        }
    }
}

/// The filesystem operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Resolving a path.
    Resolve,
    /// Reading file metadata.
    Stat,
    /// Reading the `.info` file.
    ReadInfo,
    /// Creating a destination directory.
    CreateDir,
    /// Creating the temporary file.
    CreateTemp,
    /// Copying the data.
    Copy,
    /// Reading the file's leading bytes for the content check.
    Sniff,
    /// Comparing source and destination after a conflict.
    Compare,
    /// `fsync` of a file or directory.
    Sync,
    /// Publishing by hard link.
    Link,
    /// Publishing by rename.
    Rename,
    /// Hashing the published bytes (for the `upload.finalized` event).
    Hash,
    /// Writing the `<ID>.refused` marker of a refused upload.
    MarkRefused,
}

impl Op {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Op::Resolve => "resolving a path",
            Op::Stat => "reading file metadata",
            Op::ReadInfo => "reading the upload's info file",
            Op::CreateDir => "creating a destination directory",
            Op::CreateTemp => "creating the temporary file",
            Op::Copy => "copying the data",
            Op::Sniff => "reading the file's first bytes",
            Op::Compare => "comparing with the existing destination",
            Op::Sync => "syncing to disk",
            Op::Link => "linking the destination",
            Op::Rename => "renaming into the destination",
            Op::Hash => "hashing the published file",
            Op::MarkRefused => "recording the refusal (<ID>.refused)",
        }
    }
}

/// Why an upload was not moved. The upload is still in the upload directory and no
/// temporary file is left. `Display` never contains a path from the event, a token
/// or metadata: safe to log next to the (checked) asset key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FinalizeError {
    /// A configured root is missing, relative, or not a directory, or the two roots
    /// are nested.
    #[error("{} is not an existing absolute directory", .root.config_key())]
    BadRoot {
        /// Which one.
        root: Root,
    },
    /// The source is relative, contains `..`, or resolves outside the upload
    /// directory.
    #[error("the upload's path is not inside the upload directory")]
    SourceOutside,
    /// The source is not a regular file, or has other hard links.
    #[error("the upload's path is not a regular file with a single link")]
    SourceNotFile,
    /// Neither the source nor the destination exists.
    #[error("the upload's data file does not exist and neither does the destination")]
    SourceMissing,
    /// A symlink was met where a real file or directory is required.
    #[error("refusing a symlink in the {}", .side.path())]
    Symlink {
        /// Where.
        side: Side,
    },
    /// The upload's info says it is partial, of deferred length or incomplete, or the
    /// data file's size differs from the declared size.
    #[error("the upload is not finished according to its info file")]
    NotFinished,
    /// No info file describes this data file (missing, outside, unparsable, too big,
    /// or describing another file).
    #[error("no valid info file describes the upload's data file")]
    InfoInvalid,
    /// A field the caller verified has another value in the on-disk metadata.
    #[error("the event's verified metadata differs from the upload's stored metadata")]
    MetadataMismatch,
    /// The destination is empty, absolute, or has an empty, `.`, `..`, backslash or
    /// NUL segment.
    #[error("the destination is not a plain relative path")]
    DestinationOutside,
    /// An existing component of the destination's directory is a file.
    #[error("a component of the destination's directory is not a directory")]
    DestinationNotDir,
    /// The destination exists (a file, or a directory) and overwrite is off.
    #[error("the destination already exists and overwrite is off")]
    Exists,
    /// `[upload] check_content`: the file's leading bytes are not what its declared
    /// content type says (e.g. a PNG declared as `application/pdf`).
    #[error("the file's content is not {expected}, as its declared content type says")]
    ContentMismatch {
        /// The signature family the declared type expects ("PDF", "PNG", ...).
        expected: &'static str,
    },
    /// A final upload names a part that is missing, not partial, unfinished, or
    /// created with another token.
    #[error("a part of this final upload is not a finished partial upload created with the same token")]
    ConcatInvalid,
    /// The data file is not named after the upload's ID, or its info is
    /// another upload's (a forged event pairing a verified ID with another
    /// file).
    #[error("the data file or its info file is not the upload the upload ID names")]
    IdMismatch,
    /// The mover refused this upload's bytes before and recorded it
    /// (`<ID>.refused` next to its info): no later configuration revisits it.
    #[error("the upload was refused earlier and the refusal recorded (<ID>.refused in the upload directory): not published")]
    Refused,
    /// The copy was stopped because the daemon's shutdown grace ran out.
    #[error("the copy was abandoned at shutdown (source intact, temporary file removed)")]
    Cancelled,
    /// An I/O error.
    #[error("i/o error while {}: {kind}", .op.as_str())]
    Io {
        /// During what.
        op: Op,
        /// The error's kind.
        kind: io::ErrorKind,
    },
}

impl FinalizeError {
    /// The metric label.
    pub fn reason(&self) -> Reason {
        match self {
            FinalizeError::BadRoot { .. } => Reason::BadRoot,
            FinalizeError::SourceOutside => Reason::SourceOutside,
            FinalizeError::SourceNotFile => Reason::SourceNotFile,
            FinalizeError::SourceMissing => Reason::SourceMissing,
            FinalizeError::Symlink { .. } => Reason::Symlink,
            FinalizeError::NotFinished => Reason::NotFinished,
            FinalizeError::InfoInvalid => Reason::InfoInvalid,
            FinalizeError::MetadataMismatch => Reason::MetadataMismatch,
            FinalizeError::DestinationOutside => Reason::DestinationOutside,
            FinalizeError::DestinationNotDir => Reason::DestinationNotDir,
            FinalizeError::Exists => Reason::Exists,
            FinalizeError::ContentMismatch { .. } => Reason::ContentMismatch,
            FinalizeError::ConcatInvalid => Reason::ConcatInvalid,
            FinalizeError::IdMismatch => Reason::IdMismatch,
            FinalizeError::Refused => Reason::Refused,
            FinalizeError::Cancelled => Reason::Cancelled,
            FinalizeError::Io { .. } => Reason::Io,
        }
    }

    /// Shorthand for `self.reason().as_str()`.
    pub fn as_str(&self) -> &'static str {
        self.reason().as_str()
    }

    /// Whether this is the "destination already exists" conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, FinalizeError::Exists)
    }

    pub(super) fn io(op: Op) -> impl FnOnce(io::Error) -> FinalizeError {
        move |e| FinalizeError::Io { op, kind: e.kind() }
    }
}
