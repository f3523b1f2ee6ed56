//! The `redis` backend: Redis 7 / Valkey shared by every replica.
//!
//! Client: the `redis` crate (redis-rs, the most used Rust client, maintained
//! with Redis itself) with its `ConnectionManager`: one multiplexed connection
//! per replica, re-established in the background after Redis restarts or the
//! network drops, so the gates recover without a restart. Every command is
//! bounded by `[state] timeout` twice over: the manager's own connect and
//! response timeouts, and a `tokio::time::timeout` in [`super::Shared`].
//!
//! Keys (all under `[state] key_prefix`, default `assetgate:`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `used:{hex}` | string, `PX` = the token's remaining life + skew | a consumed single-use token (`SET NX PX`: atomic across the fleet). `{hex}` is SHA-256 of the token's signed fields: no token in Redis |
//! | `revoked` | sorted set, score = `until` (`+inf`: never) | revocations ([`Revocation::encode`] members); past ones are trimmed on every write |
//! | `revoked:version` | string | a random value replaced on every write; the replicas reload the set when it changes |

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backend, Fut, Revocation, StateError, Use, NEVER};
use crate::config::RedisUrl;

/// Scores above this are stored as `+inf` (a double holds integers exactly
/// only up to 2^53).
const MAX_EXACT_SCORE: i64 = 1 << 53;

/// A Redis-backed state.
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// A lazily connecting client (no I/O here: the daemon starts while Redis
    /// is down, not ready, and recovers when it comes up).
    pub fn new(url: &RedisUrl, prefix: &str, timeout: Duration) -> Result<Self, StateError> {
        let client = redis::Client::open(url.expose()).map_err(|e| StateError(redact(&e, url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StateError(redact(&e, url)))?;
        Ok(Redis {
            conn,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn used_key(&self, id: &[u8; 32]) -> String {
        self.key(&format!("used:{}", hex::encode(id)))
    }
}

fn redact(e: &redis::RedisError, url: &RedisUrl) -> String {
    e.to_string().replace(url.expose(), &url.redacted())
}

fn err(e: redis::RedisError) -> StateError {
    StateError(format!("redis: {e}"))
}

fn score(until: i64) -> String {
    if until >= MAX_EXACT_SCORE {
        "+inf".into()
    } else {
        until.to_string()
    }
}

impl Backend for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn consume<'a>(&'a self, id: &'a [u8; 32], ttl: Duration) -> Fut<'a, Use> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.used_key(id))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(if set.is_some() { Use::First } else { Use::Replay })
        })
    }

    fn is_used<'a>(&'a self, id: &'a [u8; 32]) -> Fut<'a, bool> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let n: u64 = redis::cmd("EXISTS")
                .arg(self.used_key(id))
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    fn revoke<'a>(&'a self, entry: &'a Revocation, until: i64, now: i64) -> Fut<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let set = self.key("revoked");
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(&set)
                .arg(score(until))
                .arg(entry.encode())
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&set)
                .arg("-inf")
                .arg(format!("({now}"))
                .ignore()
                .cmd("SET")
                .arg(self.key("revoked:version"))
                .arg(new_version())
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(err)
        })
    }

    fn unrevoke<'a>(&'a self, entry: &'a Revocation) -> Fut<'a, bool> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let (removed,): (u64,) = redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(self.key("revoked"))
                .arg(entry.encode())
                .cmd("SET")
                .arg(self.key("revoked:version"))
                .arg(new_version())
                .ignore()
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(removed > 0)
        })
    }

    fn list<'a>(&'a self, now: i64) -> Fut<'a, Vec<(Revocation, i64)>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let raw: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.key("revoked"))
                .arg(now)
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(raw
                .into_iter()
                .filter_map(|(member, score)| {
                    let until = if score.is_infinite() || score >= MAX_EXACT_SCORE as f64 {
                        NEVER
                    } else {
                        score as i64
                    };
                    Revocation::decode(&member).map(|r| (r, until))
                })
                .collect())
        })
    }

    fn version<'a>(&'a self) -> Fut<'a, Option<u64>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<u64> = redis::cmd("GET")
                .arg(self.key("revoked:version"))
                .query_async(&mut c)
                .await
                .map_err(err)?;
            Ok(v)
        })
    }
}

/// A random version: a counter would repeat after a Redis that lost its data
/// restarts, and a replica would miss the change.
fn new_version() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("the OS random source is available");
    u64::from_le_bytes(b) >> 1
}
