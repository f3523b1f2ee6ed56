//! End-to-end tests against a real nginx (Debian package `nginx`, 1.22.1 on the
//! CI image), started by the test on loopback ports with its own config in a
//! tempdir. No mocks: a missing nginx fails the test with the install command.
//!
//! - **Differential** (`differential_merge_slashes_{on,off}`): one nginx server
//!   block computes the native `$secure_link` for a request *and* asks assetgate
//!   through `auth_request`; both verdicts come back in response headers.
//!   Thousands of generated request targets are sent over raw TCP (the exact
//!   bytes reach nginx) and every verdict must agree:
//!   native `1` ⇔ gate 204, native `0` ⇔ gate 403 `expired`, native empty ⇔ gate
//!   403 `invalid`/`missing`; targets nginx refuses with 400 never reach the gate.
//!   `ASSETGATE_DIFF_COUNT` (default 5000 per mode) and `ASSETGATE_DIFF_SEED`
//!   (replay) control the run; the seed is printed.
//!
//!   Many targets must be *valid* links, or the test would only prove that both
//!   sides deny garbage. Two generators produce signed links:
//!   - *built* paths: the normalised `$uri` is chosen first and then encoded with
//!     changes whose effect is known by construction (`%XX`, `%2F`, `/./`,
//!     `seg/../`, extra slashes, trailing `/.`), so the link is signed for the
//!     `$uri` nginx will compute; the test also checks nginx agrees with that
//!     intent (native verdict as designed), so a generator slip cannot quietly
//!     turn "valid" cases into "invalid" ones;
//!   - *chaos* paths: random token soup (`..`, `%2E%2E`, `%25`, `#`, `?`, UTF-8,
//!     bad escapes, ...) whose `$uri` is asked from nginx itself (an oracle server
//!     that answers `return 200 $uri;`) and then signed.
//!
//! - **Shipped config** (`shipped_config_*`): nginx with `nginx/*.conf` included
//!   verbatim (only the upstream address is rewritten to the test's assetgate),
//!   an asset tree, and the behaviour users rely on: 200 with the file, 410 for
//!   expired, 403 for forged or missing tokens, public files without a token,
//!   connections to the gate reused.
//!
//! - **Example config**: `nginx -t` accepts `nginx/assetgate.conf.example`.
//!
//! - **tusd fleet** (`tusd_fleet_*`): `nginx/assetgate-tusd-fleet.conf.example`
//!   in the example, two recording upstreams: one upload ID, one tusd.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod differential;
mod generate;
mod shipped;
mod sign;
mod tusd_fleet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::ngx::{nginx_main_conf, Nginx};
use common::{Daemon, LINK_SECRET, LINK_SECRET_OLD, UPLOAD_SECRET};

use client::*;
use generate::*;
use sign::*;
