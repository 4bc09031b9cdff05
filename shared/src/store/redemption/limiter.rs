//! The failed-attempt limiter: 429 after too many failures in an hour.
//!
//! One item per user, `USER#{user}` / `REDEEM_FAIL#HOUR`, holds the minute
//! buckets as attributes `m{epoch_minute}` = count. It is read with the
//! redemption's other items (no query of its own), and a failure adds to the
//! current minute and drops the buckets that left the window, in one write.

use super::*;

/// Sort key of the user's failure window.
pub(super) const FAILURES_SK: &str = "REDEEM_FAIL#HOUR";
/// Prefix of a minute bucket's attribute name.
const BUCKET_PREFIX: &str = "m";

/// Key of `user`'s failure window.
pub(super) fn failures_key(user: &UserId) -> Item {
    keys::item_key(keys::user_pk(user.as_str()), FAILURES_SK)
}

/// The buckets `(minute, count)` of a failure window as read (none if absent).
pub(super) fn failure_buckets(item: Option<&Item>) -> Vec<(i64, i64)> {
    let Some(item) = item else {
        return Vec::new();
    };
    item.iter()
        .filter_map(|(name, value)| {
            let minute = name.strip_prefix(BUCKET_PREFIX)?.parse::<i64>().ok()?;
            let count = value.as_n().ok()?.parse::<i64>().ok()?;
            Some((minute, count))
        })
        .collect()
}

impl DynamoStore {
    /// Counts one failed redemption in the current minute's bucket and drops
    /// the buckets of `read` (the window as read with the redemption) that
    /// left the window. A plain `ADD`: a retry after an ambiguous failure may
    /// count twice, which only makes the limit stricter.
    pub(super) async fn record_failed_attempt(
        &self,
        user: &UserId,
        read: &[(i64, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let minute = failure_minute(now);
        let start = failure_window_start(now);
        let ttl = (minute + 2 * crate::domain::redemption::FAILURE_WINDOW_MINUTES) * 60;
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(failures_key(user)))
            .expression_attribute_names("#now", format!("{BUCKET_PREFIX}{minute}"))
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":one", attr::n(1))
            .expression_attribute_values(":ttl", attr::n(ttl));
        let mut expression = "ADD #now :one SET #ttl = :ttl".to_string();
        let stale: Vec<i64> = read
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| *m < start)
            .collect();
        for (i, old) in stale.iter().enumerate() {
            expression.push_str(if i == 0 { " REMOVE " } else { ", " });
            expression.push_str(&format!("#old{i}"));
            update = update
                .expression_attribute_names(format!("#old{i}"), format!("{BUCKET_PREFIX}{old}"));
        }
        update
            .update_expression(expression)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_minute_attributes() {
        let mut item = failures_key(&UserId::parse("alice").unwrap());
        item.insert("m29000000".into(), attr::n(3));
        item.insert("m29000059".into(), attr::n(1));
        item.insert(keys::TTL.into(), attr::n(1));
        item.insert("minute".into(), attr::s("not a bucket"));
        let mut buckets = failure_buckets(Some(&item));
        buckets.sort_unstable();
        assert_eq!(buckets, vec![(29_000_000, 3), (29_000_059, 1)]);
        assert!(failure_buckets(None).is_empty());
    }
}
