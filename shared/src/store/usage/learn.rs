//! What a cancelled usage write teaches (nothing was written): records that
//! exist resolve their events; a moved quota item, account or reservation is
//! re-planned from what the failed condition returned; a conflict with
//! another transaction pauses before the next round.

use super::items::{starts_from_item, FINGERPRINT};
use super::{
    account_from_all_old, pause, Group, IngestContext, Known, Outcome, Planned, Settle, WriteState,
    WriteStats, IMMEDIATE_ACCOUNT_RETRIES, MAX_REPLANS,
};
use crate::domain::usage::Recorded;
use crate::error::Error;
use crate::store::attr;
use crate::store::credits::CREDIT_BACKOFF;
use crate::store::txn::CancelReason;
use crate::store::DynamoStore;

impl DynamoStore {
    /// A cancelled write (nothing written): records that exist resolve their
    /// events, a moved quota item, account or reservation re-plans from what
    /// the failed condition returned, and a conflict with another transaction
    /// pauses (jittered) before the next round.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn learn<'a>(
        &self,
        group: &Group<'a>,
        ctx: &IngestContext,
        known: &mut Known<'a>,
        state: &mut WriteState,
        planned: &Planned,
        reasons: &[CancelReason],
        outcomes: &mut [Outcome],
        stats: &mut WriteStats,
    ) -> Result<(), Error> {
        let failed = |k: usize| {
            reasons
                .get(k)
                .is_some_and(CancelReason::is_condition_failed)
        };
        let mut progressed = self
            .resolve_existing_records(group, state, &failed, reasons, outcomes, stats)
            .await?;
        if failed(planned.quota_at) {
            progressed = true;
            self.learn_quota(group, known, state, planned, reasons, stats)
                .await?;
        }
        if let Some(at) = planned.account_at {
            if failed(at) {
                progressed = true;
                learn_account(group, ctx, state, &reasons[at]).await?;
            } else if (at + 1..=at + planned.chain.len()).any(failed) {
                return Err(Error::Internal(format!(
                    "a ledger entry of {} exists past the account's seq",
                    group.user
                )));
            }
        }
        if let Some(at) = planned.settle_at.filter(|&at| failed(at)) {
            // The record is not as the id said: settle as it is, or apply the
            // event as a plain one (voided, expired, settled, unknown, another
            // user's).
            progressed = true;
            replanned(state, "the reservation kept changing; retry later")?;
            state.settle = reasons[at].item.as_ref().map_or(Settle::Plain, |item| {
                Settle::learned(item, group, ctx.processed_at)
            });
        }
        if !progressed {
            // Conflict with another transaction: back off.
            state.transient += 1;
            if state.transient >= ctx.backoff.max_attempts {
                return Err(Error::Conflict(
                    "the usage write stayed contended; retry later".into(),
                ));
            }
            pause(ctx, ctx.backoff.delay(state.transient)).await?;
        }
        Ok(())
    }

    /// Events whose record put failed: the record exists (applied before, or
    /// the id taken by another payload). Returns whether any was resolved.
    async fn resolve_existing_records(
        &self,
        group: &Group<'_>,
        state: &mut WriteState,
        failed: &impl Fn(usize) -> bool,
        reasons: &[CancelReason],
        outcomes: &mut [Outcome],
        stats: &mut WriteStats,
    ) -> Result<bool, Error> {
        let mut progressed = false;
        let mut still = Vec::with_capacity(state.pending.len());
        for (k, &i) in state.pending.iter().enumerate() {
            if !failed(k) {
                still.push(i);
                continue;
            }
            let stored = match reasons[k]
                .item
                .as_ref()
                .and_then(|it| attr::opt_s(it, FINGERPRINT))
            {
                Some(fp) => Some(fp.to_string()),
                // An engine that does not return ALL_OLD: read the record.
                None => {
                    stats.requests += 1;
                    self.event_record_fingerprint(group.events[i]).await?
                }
            };
            match stored {
                Some(fingerprint) => {
                    outcomes[i] = Some(Ok(Recorded {
                        fingerprint,
                        applied_now: false,
                    }));
                    progressed = true;
                }
                None => still.push(i),
            }
        }
        state.pending = still;
        Ok(progressed)
    }

    /// The quota item's windows were not as planned: learn them from the
    /// failed condition (or, on an engine without `ALL_OLD`, read them).
    async fn learn_quota<'a>(
        &self,
        group: &Group<'a>,
        known: &mut Known<'a>,
        state: &mut WriteState,
        planned: &Planned,
        reasons: &[CancelReason],
        stats: &mut WriteStats,
    ) -> Result<(), Error> {
        replanned(state, "the quota item's windows kept moving; retry later")?;
        let learned = match reasons[planned.quota_at].item.as_ref() {
            Some(item) => starts_from_item(item)?,
            // No item came back: there is none, unless this plan already
            // assumed that (an engine without ALL_OLD); then read it.
            None if planned.starts != Some([None; 3]) => [None; 3],
            None => {
                stats.requests += 1;
                self.quota_starts(group.user, group.platform).await?
            }
        };
        known.set_starts(group.platform, learned);
        Ok(())
    }
}

/// Another writer moved the account on. The failed condition returned it:
/// retry at once with it. A hot account loses repeatedly; then pause
/// (jittered) and read it fresh, as the returned state is stale once others
/// wrote meanwhile.
async fn learn_account(
    group: &Group<'_>,
    ctx: &IngestContext,
    state: &mut WriteState,
    reason: &CancelReason,
) -> Result<(), Error> {
    state.contended += 1;
    if state.contended >= CREDIT_BACKOFF.max_attempts {
        return Err(Error::Conflict(format!(
            "the credit account of {} is busy; retry later",
            group.user
        )));
    }
    state.account = None;
    if state.contended <= IMMEDIATE_ACCOUNT_RETRIES {
        state.account = reason
            .item
            .as_ref()
            .and_then(|item| account_from_all_old(group.user, item));
    } else {
        pause(ctx, CREDIT_BACKOFF.delay(state.contended)).await?;
    }
    Ok(())
}

/// Counts a re-plan after a failed condition; too many is a 409.
fn replanned(state: &mut WriteState, exhausted: &str) -> Result<(), Error> {
    state.replans += 1;
    if state.replans > MAX_REPLANS {
        return Err(Error::Conflict(exhausted.into()));
    }
    Ok(())
}
