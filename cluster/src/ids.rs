//! Identifiers: world ids and the rules that keep them safe as storage keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A world's id: `w` followed by 16 lowercase hex digits, random at creation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorldId(String);

impl WorldId {
    /// A new random id (ids are not generation input, so OS randomness is fine here).
    pub fn random() -> Self {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS random source is available");
        WorldId(format!("w{}", hex::encode(b)))
    }

    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() == 17
            && s.starts_with('w')
            && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(WorldId(s.to_owned()))
        } else {
            Err(Error::not_found(format!("no world with id {s:?} (ids look like w0123456789abcdef)")).with_field("id"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorldId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        WorldId::parse(&s)
    }
}

impl From<WorldId> for String {
    fn from(id: WorldId) -> String {
        id.0
    }
}

impl fmt::Display for WorldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_and_hostile_ids_do_not() {
        let id = WorldId::random();
        assert_eq!(WorldId::parse(id.as_str()).unwrap(), id);
        for bad in ["", "w", "../etc/passwd", "w0123456789abcdeF", "w0123456789abcde/", "x0123456789abcdef"] {
            assert!(WorldId::parse(bad).is_err(), "{bad}");
        }
    }
}
