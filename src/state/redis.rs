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
//! | `used:{hex}` | string, `PX` = the token's remaining life + skew | a consumed single-use token; the value is the consuming request's nonce (`1` from versions before the nonce: a replay all the same). `{hex}` is SHA-256 of the token's signed fields: no token in Redis |
//! | `parts:{hex}` | hash nonce → declared size, `PEXPIRE` as `used:` | the partial uploads counted for the grant (`[upload] max_parts`, `max_size`) |
//! | `undone:{nonce}` | string, `PX` as `used:` | a claim given up and undone: if it runs later, it writes nothing |
//! | `revoked` | sorted set, score = `until` (`+inf`: never) | revocations ([`Revocation::encode`] members); past ones are trimmed on every write |
//! | `revoked:version` | string | a random value replaced on every write; the replicas reload the set when it changes |
//!
//! Every single-use claim and undo is one `EVALSHA` of `SCRIPT` (loaded on
//! `NOSCRIPT` by `redis::Script`): the decision and what it writes are one
//! atomic step, fleet-wide. An undo goes through the same `ConnectionManager`,
//! that is the same multiplexed connection as the claim it undoes (a timeout
//! does not reconnect it: redis-rs reconnects only on a dropped connection),
//! so Redis runs it right after that claim.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::backend::{Ask, Backend, Fut, Nonce, StateError, Use};
use super::revocation::{Revocation, NEVER};
use crate::config::RedisUrl;
use crate::tusd::precreate::ClaimKind;

/// Scores above this are stored as `+inf` (a double holds integers exactly
/// only up to 2^53).
const MAX_EXACT_SCORE: i64 = 1 << 53;

/// The single-use script: every claim and every undo is one `EVALSHA` of it,
/// so a decision and what it writes are one atomic step in Redis.
///
/// `KEYS`: 1 the mark `used:{id}`, 2 the parts `parts:{id}`, 3 this request's
/// tombstone `undone:{nonce}`, 4… the tombstones of `ARGV[7…]`.
/// `ARGV`: 1 `consume`, `part` or `undo`; 2 this request's nonce; 3 the TTL in
/// ms; 4 the part's declared size; 5 `max_parts`; 6 `max_bytes` (empty: no
/// bound); 7… nonces of given-up claims to undo first.
/// Answers 1 first use (or part counted, or undone), 0 replay (the token is
/// used), 2 too many parts, 3 parts too large, -1 this request was undone
/// already (it arrived after its own undo: nothing written).
///
/// An undo deletes the mark only if it still holds the undone nonce, drops the
/// nonce's part, and leaves a tombstone so that the claim, if it runs later
/// (another connection, after a reconnect), writes nothing. Sizes are summed
/// as Lua numbers (doubles): exact up to 2^53 bytes (8 PiB).
const SCRIPT: &str = r"
local used, parts, ttl = KEYS[1], KEYS[2], ARGV[3]
local function undo(nonce, tombstone)
  if redis.call('GET', used) == nonce then redis.call('DEL', used) end
  redis.call('HDEL', parts, nonce)
  redis.call('SET', tombstone, '1', 'PX', ttl)
end
for i = 7, #ARGV do undo(ARGV[i], KEYS[i - 3]) end
local op, nonce = ARGV[1], ARGV[2]
if op == 'undo' then
  undo(nonce, KEYS[3])
  return 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if op == 'consume' then
  if redis.call('SET', used, nonce, 'NX', 'PX', ttl) then return 1 end
  return 0
end
if redis.call('EXISTS', used) == 1 then return 0 end
local sizes = redis.call('HVALS', parts)
if #sizes >= tonumber(ARGV[5]) then return 2 end
if ARGV[6] ~= '' then
  local total = tonumber(ARGV[4])
  for _, s in ipairs(sizes) do total = total + tonumber(s) end
  if total > tonumber(ARGV[6]) then return 3 end
end
redis.call('HSET', parts, nonce, ARGV[4])
redis.call('PEXPIRE', parts, ttl)
return 1
";

/// A Redis-backed state.
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
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
            script: redis::Script::new(SCRIPT),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn undone_key(&self, nonce: &Nonce) -> String {
        self.key(&format!("undone:{}", nonce.hex()))
    }

    /// One run of [`SCRIPT`]: `op` for `ask` (the undo list only with a claim).
    async fn run(&self, op: &str, ask: &Ask) -> Result<i64, StateError> {
        let id = hex::encode(ask.id);
        let undo: &[Nonce] = if op == "undo" { &[] } else { &ask.undo };
        let (size, max_parts, max_bytes) = match ask.kind {
            ClaimKind::Consume => (0, 0, None),
            ClaimKind::Part {
                size,
                max_parts,
                max_bytes,
            } => (size, max_parts, max_bytes),
        };
        let mut call = self.script.prepare_invoke();
        call.key(self.key(&format!("used:{id}")))
            .key(self.key(&format!("parts:{id}")))
            .key(self.undone_key(&ask.nonce));
        for n in undo {
            call.key(self.undone_key(n));
        }
        call.arg(op)
            .arg(ask.nonce.hex())
            .arg(ask.ttl.as_millis().max(1) as u64)
            .arg(size)
            .arg(max_parts)
            .arg(max_bytes.map(|m| m.to_string()).unwrap_or_default());
        for n in undo {
            call.arg(n.hex());
        }
        let mut c = self.conn.clone();
        call.invoke_async(&mut c).await.map_err(err)
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

    fn claim<'a>(&'a self, ask: &'a Ask) -> Fut<'a, Use> {
        Box::pin(async move {
            let op = match ask.kind {
                ClaimKind::Consume => "consume",
                ClaimKind::Part { .. } => "part",
            };
            match self.run(op, ask).await? {
                1 => Ok(Use::First),
                0 => Ok(Use::Replay),
                2 => Ok(Use::TooManyParts),
                3 => Ok(Use::PartsTooLarge),
                -1 => Err(StateError::gave_up()),
                other => Err(StateError(format!(
                    "redis: unexpected answer {other} from the single-use script"
                ))),
            }
        })
    }

    fn undo<'a>(&'a self, ask: &'a Ask) -> Fut<'a, ()> {
        Box::pin(async move { self.run("undo", ask).await.map(|_| ()) })
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
