//! Cursor paging, the one convention of every list of the JSON API: the query takes `after`
//! (the key of the last item of the previous page: its `id`, or a device's `uid`) and `limit`;
//! the answer is `{"items": [...], "next_after": <key or null>}`, `next_after` null exactly on
//! the last page. A list ordered by something other than its key (time, severity) seeks from
//! the position of the item named by `after` in that order, so the cursor stays the plain key.

use serde::Serialize;

use super::ApiError;

/// The bounds of `limit` on a list: its default and its largest value.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default: i64,
    pub max: i64,
}

/// The limits of most lists.
pub const STANDARD: Limits = Limits {
    default: 100,
    max: 1000,
};

impl Limits {
    /// The page size asked for, or 422 naming `limit`.
    pub fn check(self, limit: Option<i64>) -> Result<i64, ApiError> {
        let limit = limit.unwrap_or(self.default);
        if !(1..=self.max).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {}", self.max),
            ));
        }
        Ok(limit)
    }
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    /// `after` for the next page; null on the last one.
    pub next_after: Option<K>,
}

impl<T, K> Page<T, K> {
    /// The page from `rows` fetched with `LIMIT limit + 1`: the extra row only says that there
    /// is another page, and is dropped.
    pub fn from_rows(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> K) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_after = if more { items.last().map(key) } else { None };
        Self { items, next_after }
    }
}

/// 422 naming `after` when it names no item of the list.
pub fn unknown_after() -> ApiError {
    ApiError::invalid("after", "names no item of this list")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_row_says_there_is_more() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |i| *i);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_after, Some(2));
        let last = Page::from_rows(vec![1, 2], 2, |i| *i);
        assert_eq!(last.next_after, None);
    }

    #[test]
    fn limits_out_of_range_name_limit() {
        assert_eq!(STANDARD.check(None).unwrap(), 100);
        assert!(STANDARD.check(Some(0)).is_err());
        assert!(STANDARD.check(Some(1001)).is_err());
    }
}
