//! `--redis URL`: `redis://[[user]:password@]host[:port][/db]`.

use std::fmt;

/// Where Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or address.
    pub host: String,
    /// Port (6379 when not given).
    pub port: u16,
    /// Database number (SELECT; 0 when not given).
    pub db: u32,
    /// ACL user (AUTH user password), if given.
    pub user: Option<String>,
    /// Password (AUTH), if given.
    pub password: Option<String>,
}

/// The password never reaches logs or `Debug` output.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.password.is_some() { "***@" } else { "" };
        write!(f, "redis://{auth}{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses the URL; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let t = text.trim();
        if t.starts_with("rediss://") {
            return Err(format!(
                "'{t}': rediss:// (TLS to Redis) is not supported yet"
            ));
        }
        let rest = t
            .strip_prefix("redis://")
            .ok_or_else(|| format!("'{t}' is not a redis:// URL"))?;
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, db)) => (
                h,
                db.parse()
                    .map_err(|_| format!("'{t}': database '{db}' is not a number"))?,
            ),
            None => (rest, 0),
        };
        let (auth, hostport) = match hostport.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, hostport),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(p.to_string())),
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (None, Some(a.to_string())),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{t}': unclosed ["))?;
            (h, p.strip_prefix(':').unwrap_or(""))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (hostport, ""),
            }
        };
        if host.is_empty() {
            return Err(format!("'{t}' names no host"));
        }
        let port = if port.is_empty() {
            6379
        } else {
            port.parse()
                .map_err(|_| format!("'{t}': port '{port}' is not a number"))?
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            db,
            user,
            password: password.filter(|p| !p.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6380, 2));
        assert_eq!(u.password, None);
        let u = RedisUrl::parse("redis://:s3cret@redis").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("redis", 6379, 0));
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
        let u = RedisUrl::parse("redis://app:pw@[::1]:7000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.user.as_deref(), Some("app"));
        for bad in [
            "http://x",
            "redis://",
            "redis://h:port",
            "redis://h/x",
            "rediss://h",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
