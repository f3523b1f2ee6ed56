//! Pure token verification: no I/O, no clock of its own (time is a parameter).

pub mod link;
pub mod nginx_uri;
pub mod upload;
pub mod upload_id;
