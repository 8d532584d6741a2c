//! Receive resume tokens: what an interrupted `zfs receive -s` leaves behind in
//! the `receive_resume_token` property, and what `zfs send -t` continues from.

use std::fmt;

use super::version_path::SnapshotPath;

/// Tokens are a few hundred bytes; this bound only stops absurd input.
pub const MAX_RESUME_TOKEN_LEN: usize = 16 * 1024;

/// The token as ZFS prints it: `1-<checksum>-<length>-<hex payload>`. Opaque to
/// zferry: only `zfs send -nv -t` decodes it (see [`ResumeTokenInfo`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResumeToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeTokenError {
    #[error("resume token {token:?} is not of the form <version>-<hex>-<hex>-<hex>")]
    Malformed { token: String },
    #[error("resume token of {len} bytes is longer than {MAX_RESUME_TOKEN_LEN}")]
    TooLong { len: usize },
}

impl ResumeToken {
    /// Checks the shape only. `-` (the property's "no token") is not a token:
    /// see [`ResumeToken::from_property`].
    pub fn parse(s: &str) -> Result<ResumeToken, ResumeTokenError> {
        if s.len() > MAX_RESUME_TOKEN_LEN {
            return Err(ResumeTokenError::TooLong { len: s.len() });
        }
        let fields: Vec<&str> = s.split('-').collect();
        let hex = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_hexdigit());
        let version_ok =
            fields.first().is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        if fields.len() != 4 || !version_ok || !fields[1..].iter().all(|f| hex(f)) {
            return Err(ResumeTokenError::Malformed { token: s.to_owned() });
        }
        Ok(ResumeToken(s.to_owned()))
    }

    /// Reads the `receive_resume_token` property value: `-` means none.
    pub fn from_property(value: &str) -> Result<Option<ResumeToken>, ResumeTokenError> {
        match value {
            "-" | "" => Ok(None),
            token => ResumeToken::parse(token).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ResumeToken {
    type Error = ResumeTokenError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ResumeToken::parse(&s)
    }
}

impl From<ResumeToken> for String {
    fn from(t: ResumeToken) -> String {
        t.0
    }
}

/// What a token says about the interrupted transfer, as `zfs send -nv -t` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumeTokenInfo {
    /// Base of the incremental stream; `None` for a full stream.
    pub from_guid: Option<u64>,
    /// The snapshot being sent, by guid: the identity that must still match.
    pub to_guid: u64,
    /// The snapshot's name on the sender when the transfer started.
    pub to_name: SnapshotPath,
    /// Bytes already received.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_shape_zfs_prints() {
        let t = "1-e604ea4bf-e0-789c63a2a06046";
        assert_eq!(ResumeToken::parse(t).expect("token").as_str(), t);
    }

    #[test]
    fn rejects_anything_else_naming_it() {
        for bad in
            ["", "-", "1-a-b", "1-a-b-c-d", "x-a-b-c", "1-g-b-c", "1--b-c", "-t", "1-a-b-c\n"]
        {
            assert_eq!(
                ResumeToken::parse(bad),
                Err(ResumeTokenError::Malformed { token: bad.into() })
            );
        }
        let long = format!("1-a-b-{}", "c".repeat(MAX_RESUME_TOKEN_LEN));
        assert!(matches!(ResumeToken::parse(&long), Err(ResumeTokenError::TooLong { .. })));
    }

    #[test]
    fn property_dash_means_no_token() {
        assert_eq!(ResumeToken::from_property("-"), Ok(None));
        assert!(matches!(ResumeToken::from_property("1-a-b-c"), Ok(Some(_))));
        assert!(ResumeToken::from_property("garbage").is_err());
    }
}
