//! Bearer tokens with scopes.
//!
//! A token is 32 random bytes in hex after `tg_`; the store keeps only its SHA-256. It is sent as
//! `Authorization: Bearer <token>`, or as the password of Basic authentication. Scopes:
//! `integration` (authorize, call events, record intake), `operator` (everything),
//! `customer:<account>` (read its own account, alerts and decisions).

use crate::{ApiError, AppState};
use axum::http::{HeaderMap, StatusCode};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tollguard_store::Store;

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Switches and PBXs: authorize, answer, end, records.
    Integration,
    /// The carrier's NOC: everything.
    Operator,
    /// One account's own data.
    Customer(String),
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "integration" => Ok(Scope::Integration),
            "operator" => Ok(Scope::Operator),
            _ => match s.strip_prefix("customer:") {
                Some(a) if !a.trim().is_empty() => Ok(Scope::Customer(a.to_string())),
                _ => Err(format!("unknown scope {s:?}: integration, operator or customer:<account>")),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Integration => f.write_str("integration"),
            Scope::Operator => f.write_str("operator"),
            Scope::Customer(a) => write!(f, "customer:{a}"),
        }
    }
}

/// The stored form of a token: SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex of `bytes` (on every request's token: no formatting machinery).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Creates a token in the store at `db` and returns it (shown once; only its hash is kept).
pub fn create_token(db: &Path, name: &str, scope: &Scope) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("tg_{}", hex(&bytes));
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let mut store = Store::open(db)?;
    store.batch(|b| b.add_token(&hash_token(&token), name, &scope.to_string(), now))?;
    Ok(token)
}

/// The tokens stored: (name, scope, created, RFC 3339), oldest first. The tokens themselves are
/// not stored, only their hashes.
pub fn list_tokens(db: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let store = existing(db)?;
    Ok(store
        .tokens()?
        .into_iter()
        .map(|(name, scope, ns)| {
            let created =
                jiff::Timestamp::from_nanosecond(ns as i128).map(|t| t.to_string()).unwrap_or_default();
            (name, scope, created)
        })
        .collect())
}

/// Revokes the tokens named `name` (written to the audit log); returns how many there were. A
/// running server stops accepting them within [`TOKEN_RECHECK`].
pub fn revoke_tokens(db: &Path, name: &str) -> anyhow::Result<usize> {
    let mut store = existing(db)?;
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let details = serde_json::json!({ "name": name }).to_string();
    let n = store.batch(|b| {
        let n = b.remove_tokens(name)?;
        if n > 0 {
            b.audit(now, "tollguard token revoke", "revoke_token", "", &details)?;
        }
        Ok(n)
    })?;
    Ok(n)
}

/// The store at `db`, which must exist (opening a mistyped path would make an empty one).
fn existing(db: &Path) -> anyhow::Result<Store> {
    if !db.is_file() {
        anyhow::bail!("no database at {}", db.display());
    }
    Ok(Store::open(db)?)
}

/// How long a server trusts a token it has looked up before it looks again (a revoked token is
/// refused after at most this long, by the server's clock).
pub const TOKEN_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// What an endpoint needs.
pub(crate) enum Need<'a> {
    /// Call-path endpoints.
    Integration,
    /// Operator-only endpoints.
    Operator,
    /// Reading one account's data.
    Read(&'a str),
}

pub(crate) fn forbidden() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this token's scope does not allow this")
}

/// The scope of the request's bearer token.
pub(crate) fn scope(state: &AppState, headers: &HeaderMap) -> Result<Scope, ApiError> {
    caller(state, headers).map(|(_, s)| s)
}

/// Who made the request, for the audit log: `<token name> (<scope>)`.
pub(crate) fn who(state: &AppState, headers: &HeaderMap) -> String {
    match caller(state, headers) {
        Ok((name, scope)) => format!("{name} ({scope})"),
        Err(_) => "unknown".into(),
    }
}

/// The name of the dashboard's sign-in cookie.
pub(crate) const COOKIE: &str = "tollguard_token";

/// The token in the dashboard's sign-in cookie, if any.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_string())
        },
    )
}

/// The name and scope of the request's token: the Authorization header's, or the dashboard's
/// sign-in cookie when the request says it comes from the dashboard (`X-Tollguard-UI`, a
/// header another site's page cannot send without asking first: no cross-site request forgery).
fn caller(state: &AppState, headers: &HeaderMap) -> Result<(String, Scope), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    if !headers.contains_key("authorization") && headers.contains_key("x-tollguard-ui") {
        let token = cookie_token(headers).ok_or_else(|| unauthorized("not signed in"))?;
        return token_caller(state, &token);
    }
    let value = headers
        .get("authorization")
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    // Bearer <token>; or Basic with the token as the password, for clients that only know basic
    // authentication (FreeSWITCH mod_json_cdr's `cred`).
    let token = if let Some(t) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        t.trim().to_string()
    } else if let Some(b) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
        decoded.split_once(':').map(|(_, p)| p.to_string()).unwrap_or(decoded)
    } else {
        return Err(unauthorized("the Authorization header must be Bearer <token>"));
    };
    token_caller(state, &token)
}

/// The name and scope of a token.
pub(crate) fn token_caller(state: &AppState, token: &str) -> Result<(String, Scope), ApiError> {
    let hash = hash_token(token);
    let now = state.now();
    if let Some((name, scope, at)) = state.tokens.lock().expect("token cache").get(&hash) {
        // A clock set back (a driven one) looks again too.
        let age = now.duration_since(*at);
        if !age.is_negative() && age < TOKEN_RECHECK {
            return Ok((name.clone(), scope.clone()));
        }
    }
    let stored = state
        .reader
        .lock()
        .expect("reader lock")
        .token(&hash)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    let scope: Scope = stored.scope.parse().map_err(ApiError::internal)?;
    let mut cache = state.tokens.lock().expect("token cache");
    cache.insert(hash, (stored.name.clone(), scope.clone(), now));
    Ok((stored.name, scope))
}

/// Checks the token against what the endpoint needs; returns the scope, for the audit trail.
pub(crate) fn require(state: &AppState, headers: &HeaderMap, need: Need<'_>) -> Result<Scope, ApiError> {
    let s = scope(state, headers)?;
    let ok = match (&s, need) {
        (Scope::Operator, _) => true,
        (Scope::Integration, Need::Integration) => true,
        (Scope::Customer(own), Need::Read(account)) => own == account,
        _ => false,
    };
    if ok {
        Ok(s)
    } else {
        Err(forbidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for s in ["integration", "operator", "customer:acme"] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        assert!("customer:".parse::<Scope>().is_err());
        assert!("admin".parse::<Scope>().unwrap_err().contains("integration, operator"));
        assert_eq!(hash_token("x").len(), 64);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // SHA-256 of "abc" (FIPS 180-2's example).
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
