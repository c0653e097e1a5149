//! Accounts and API tokens. A token is shown once when created; only its
//! SHA-256 is stored. Every write to the API needs `Authorization: Bearer TOKEN`.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::Digest;
use worldloom_cluster::model::{AccountRecord, TokenRecord};
use worldloom_cluster::storage::{self, Key, ObjectStore};
use worldloom_cluster::{Error, ErrorKind, Result};

/// Prefix that makes Worldloom tokens recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "wl_";
/// Longest accepted Authorization header value.
const MAX_HEADER: usize = 256;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
}

/// Checks an account or plugin name: 1 to 64 of `a-z 0-9 - _`, starting with
/// a letter. Names never become storage keys as they are (keys hex-encode them).
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).flat_map(char::escape_default).collect();
        Err(Error::invalid(
            field,
            format!(
                "{field} \"{shown}\" is not a valid name: use 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter"
            ),
        )
        .with_code("invalid_name"))
    }
}

fn token_key(token_sha256: &[u8]) -> Key {
    Key::opaque("tokens/", token_sha256)
}

fn account_key(name: &str) -> Key {
    Key::opaque("accounts/", name.as_bytes())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Creates an account and returns its token (the only time it is visible).
pub async fn create_account(store: &dyn ObjectStore, name: &str) -> Result<String> {
    check_name("name", name)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::internal(format!("no OS randomness for a token: {e}")))?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let digest = sha2::Sha256::digest(token.as_bytes());
    let created = now();
    let account = AccountRecord { name: name.to_owned(), token_sha256: hex::encode(digest), created_unix_s: created };
    if !storage::put_new_value(store, &account_key(name), &account).await? {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("account {name:?} already exists; revoke it first to issue a new token"),
        ));
    }
    storage::put_value(store, &token_key(&digest), &TokenRecord { account: name.to_owned(), created_unix_s: created })
        .await?;
    Ok(token)
}

/// Deletes an account's token (and the account) so it no longer authenticates.
pub async fn revoke_account(store: &dyn ObjectStore, name: &str) -> Result<()> {
    check_name("name", name)?;
    let key = account_key(name);
    let account: AccountRecord =
        storage::get_value(store, &key).await?.ok_or_else(|| Error::not_found(format!("no account named {name:?}")))?;
    let digest = hex::decode(&account.token_sha256).map_err(|_| Error::internal("a stored token hash is not hex"))?;
    store.delete(&token_key(&digest)).await?;
    store.delete(&key).await
}

/// Every account name.
pub async fn list_accounts(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for key in store.list(&Key::dir("accounts/")).await? {
        if let Some(name) = key.opaque_name().and_then(|b| String::from_utf8(b).ok()) {
            names.push(name);
        }
    }
    Ok(names)
}

fn unauthorized(message: &str) -> Error {
    Error::new(ErrorKind::Unauthorized, message)
}

/// The account an `Authorization` header value authenticates.
pub async fn authenticate(store: &dyn ObjectStore, header: Option<&[u8]>) -> Result<Account> {
    let Some(raw) = header else {
        return Err(unauthorized(
            "this request needs `Authorization: Bearer TOKEN`; an operator creates tokens with `worldloom token create NAME`",
        ));
    };
    if raw.len() > MAX_HEADER {
        return Err(unauthorized("the Authorization header is too long to hold a Worldloom token"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| unauthorized("the Authorization header is not text"))?;
    let token = text
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(unauthorized("that is not a Worldloom token (they start with wl_)"));
    }
    let digest = sha2::Sha256::digest(token.as_bytes());
    match storage::get_value::<TokenRecord>(store, &token_key(&digest)).await? {
        Some(record) => Ok(Account { name: record.account }),
        None => Err(unauthorized("unknown or revoked token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_authenticate_until_revoked_and_only_hashes_are_stored() {
        let store = storage::open("memory://", &Default::default()).unwrap();
        let token = create_account(store.as_ref(), "alice").await.unwrap();
        assert!(token.starts_with("wl_") && token.len() == 67);
        let header = format!("Bearer {token}");
        assert_eq!(authenticate(store.as_ref(), Some(header.as_bytes())).await.unwrap().name, "alice");
        let mut keys = store.list(&Key::dir("accounts/")).await.unwrap();
        keys.extend(store.list(&Key::dir("tokens/")).await.unwrap());
        assert_eq!(keys.len(), 2);
        for key in keys {
            let bytes = store.get(&key).await.unwrap().unwrap();
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{key} holds the token");
            assert!(!key.as_str().contains(&token[3..]), "{key} names the token");
        }
        let again = create_account(store.as_ref(), "alice").await.unwrap_err();
        assert_eq!(again.kind, ErrorKind::Conflict);
        assert_eq!(list_accounts(store.as_ref()).await.unwrap(), ["alice"]);
        revoke_account(store.as_ref(), "alice").await.unwrap();
        let e = authenticate(store.as_ref(), Some(header.as_bytes())).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    #[tokio::test]
    async fn missing_or_malformed_credentials_are_unauthorized() {
        let store = storage::open("memory://", &Default::default()).unwrap();
        for header in [None, Some(&b"Basic abc"[..]), Some(&b"Bearer nope"[..]), Some(&b"Bearer wl_00"[..])] {
            let e = authenticate(store.as_ref(), header).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unauthorized);
        }
        let long = vec![b'a'; 1000];
        assert_eq!(authenticate(store.as_ref(), Some(&long)).await.unwrap_err().kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn names_are_strict_and_path_safe() {
        for good in ["a", "rivers", "erosion-v2", "a_b_9"] {
            check_name("name", good).unwrap();
        }
        let too_long = "a".repeat(65);
        for bad in ["", "A", "9lives", "../etc", "a/b", "a..b", "a\0b", "über", " x", too_long.as_str(), "a.b"] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
