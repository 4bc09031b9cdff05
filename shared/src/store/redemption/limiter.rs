//! The failed-attempt limiter: 429 after too many failures in an hour.

use super::*;

impl DynamoStore {
    /// The user's failure buckets of the last hour, `(minute, count)`.
    pub async fn failed_attempts(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64)>, Error> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", attr::s(keys::user_pk(user.as_str())))
            .expression_attribute_values(":from", attr::s(fail_sk(failure_window_start(now))))
            .expression_attribute_values(":to", attr::s(fail_sk(failure_minute(now))))
            .send()
            .await
            .map_err(unavailable)?;
        out.items()
            .iter()
            .map(|item| {
                Ok((
                    attr::get_i64(item, "minute")?,
                    attr::get_i64(item, "count")?,
                ))
            })
            .collect()
    }

    /// Counts one failed redemption in the current minute's bucket. A plain
    /// `ADD`: a retry after an ambiguous failure may count twice, which only
    /// makes the limit stricter.
    pub async fn record_failed_attempt(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let minute = failure_minute(now);
        let ttl = (minute + 2 * crate::domain::redemption::FAILURE_WINDOW_MINUTES) * 60;
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(keys::item_key(
                keys::user_pk(user.as_str()),
                fail_sk(minute),
            )))
            .update_expression("ADD #count :one SET #minute = :minute, #ttl = :ttl")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":one", attr::n(1))
            .expression_attribute_values(":minute", attr::n(minute))
            .expression_attribute_values(":ttl", attr::n(ttl))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
