//! Topic names and filters: validation, matching, ACL coverage and shared-subscription parsing.
//!
//! Everything here works on `/`-separated levels, as MQTT 3.1.1 §4.7 defines them. A topic
//! whose first level starts with `$` is never matched by a filter that starts with a wildcard
//! (§4.7.2); the same rule applies to ACL filters, so `#` in an ACL does not grant `$SYS/...`.

/// Prefix of a shared subscription: `$share/{group}/{filter}`.
const SHARE_PREFIX: &str = "$share/";

/// A topic name a client may publish to: non-empty, no wildcards, no NUL.
pub(super) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A topic filter: non-empty; `#` only as the whole last level; `+` only as a whole level.
pub(super) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// Does `topic` (a valid topic name) match `filter` (a valid filter)?
pub(super) fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    let mut f = filter.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Does ACL filter `acl` cover every topic that `filter` can match?
///
/// Computed on levels: `#` covers everything from its level down (including the parent level,
/// as `a/#` matches `a`), `+` covers one literal level or a `+`, a literal covers only itself.
/// Conservative: a filter is refused unless one ACL entry covers it on its own.
pub(super) fn covers(acl: &str, filter: &str) -> bool {
    let starts_wild = |s: &str| s.starts_with('+') || s.starts_with('#');
    if filter.starts_with('$') && starts_wild(acl) {
        return false;
    }
    let mut a = acl.split('/');
    let mut f = filter.split('/');
    loop {
        match (a.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(fl)) if fl != "#" => {}
            (Some(al), Some(fl)) if al == fl && al != "#" && al != "+" => {}
            (Some("+"), Some(_)) => return false,
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A parsed SUBSCRIBE/UNSUBSCRIBE filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FilterSpec<'a> {
    /// An ordinary subscription.
    Direct(&'a str),
    /// `$share/{group}/{filter}`: each message goes to one member of the group.
    Shared { group: &'a str, filter: &'a str },
}

impl<'a> FilterSpec<'a> {
    /// Parse and validate; `None` if the filter (or share group name) is invalid.
    pub(super) fn parse(raw: &'a str) -> Option<Self> {
        if let Some(rest) = raw.strip_prefix(SHARE_PREFIX) {
            let (group, filter) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) || !valid_filter(filter) {
                return None;
            }
            return Some(FilterSpec::Shared { group, filter });
        }
        if raw == "$share" || !valid_filter(raw) {
            return None;
        }
        Some(FilterSpec::Direct(raw))
    }

    /// The filter that topics are matched against (the inner filter for a shared one).
    pub(super) fn filter(&self) -> &'a str {
        match *self {
            FilterSpec::Direct(f) => f,
            FilterSpec::Shared { filter, .. } => filter,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn filter_validation() {
        for ok in [
            "a", "a/b", "#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a/b+", "#/a", "a/++", "a\0"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("a/b/c", "a/#"));
        assert!(matches("a", "a/#"));
        assert!(matches("a/b", "a/+"));
        assert!(!matches("a/b/c", "a/+"));
        assert!(matches("a//c", "a/+/c"));
        assert!(!matches("$SYS/x", "#"));
        assert!(!matches("$SYS/x", "+/x"));
        assert!(matches("$SYS/x", "$SYS/#"));
        assert!(!matches("a", "b"));
        assert!(!matches("a/b", "a"));
    }

    #[test]
    fn coverage() {
        assert!(covers("#", "a/b"));
        assert!(covers("#", "#"));
        assert!(covers("d/1/#", "d/1"));
        assert!(covers("d/1/#", "d/1/+/x"));
        assert!(covers("d/+/s", "d/+/s"));
        assert!(covers("d/+/s", "d/7/s"));
        assert!(!covers("d/+/s", "d/#"));
        assert!(!covers("d/1/#", "d/+/x"));
        assert!(!covers("d/1/s", "d/1/s/x"));
        assert!(!covers("d/1/s/x", "d/1/s"));
        assert!(!covers("#", "$SYS/a"));
        assert!(!covers("+/s", "+/#"));
    }

    #[test]
    fn shared_parsing() {
        assert_eq!(
            FilterSpec::parse("$share/g/a/#"),
            Some(FilterSpec::Shared {
                group: "g",
                filter: "a/#"
            })
        );
        assert_eq!(FilterSpec::parse("$share/g"), None);
        assert_eq!(FilterSpec::parse("$share//a"), None);
        assert_eq!(FilterSpec::parse("$share/g+/a"), None);
        assert_eq!(FilterSpec::parse("a/+"), Some(FilterSpec::Direct("a/+")));
    }
}
