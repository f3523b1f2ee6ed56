//! `check-config`'s view: the core's serializers, and the daemon's own.

pub(crate) use assetgate_core::config::show::{count, duration, path_buf, secs, u64, NOT_SET};

use serde::Serializer;

pub(crate) fn admin_listen<S: Serializer>(a: &Option<std::net::SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str("<not set: the admin API is on server.admin_socket only>"),
    }
}
