//! What a cancelled usage write teaches (nothing was written): records that
//! exist resolve their events; a moved quota item, account or reservation is
//! re-planned from what the failed condition returned; a conflict with
//! another transaction pauses before the next round.

use super::items::{starts_from_item, FINGERPRINT};
use super::{
    account_from_all_old, pause, GroupWrite, Planned, Settle, WriteState,
    IMMEDIATE_ACCOUNT_RETRIES, MAX_REPLANS,
};
use crate::domain::usage::Recorded;
use crate::error::Error;
use crate::store::attr;
use crate::store::credits::CREDIT_BACKOFF;
use crate::store::txn::CancelReason;

impl GroupWrite<'_, '_> {
    /// A cancelled write (nothing written): records that exist resolve their
    /// events, a moved quota item, account or reservation re-plans from what
    /// the failed condition returned, and a conflict with another transaction
    /// pauses (jittered) before the next round.
    pub(super) async fn learn(
        &mut self,
        planned: &Planned,
        reasons: &[CancelReason],
    ) -> Result<(), Error> {
        let failed = |k: usize| {
            reasons
                .get(k)
                .is_some_and(CancelReason::is_condition_failed)
        };
        let mut progressed = self.resolve_existing_records(&failed, reasons).await?;
        if failed(planned.quota_at) {
            progressed = true;
            self.learn_quota(planned, reasons).await?;
        }
        if let Some(at) = planned.account_at {
            if failed(at) {
                progressed = true;
                self.learn_account(&reasons[at]).await?;
            } else if (at + 1..=at + planned.chain.len()).any(failed) {
                return Err(Error::Internal(format!(
                    "a ledger entry of {} exists past the account's seq",
                    self.group.user
                )));
            }
        }
        if let Some(at) = planned.settle_at.filter(|&at| failed(at)) {
            // The record is not as the id said: settle as it is, or apply the
            // event as a plain one (voided, expired, settled, unknown, another
            // user's).
            progressed = true;
            replanned(
                &mut self.state,
                "the reservation kept changing; retry later",
            )?;
            self.state.settle = reasons[at].item.as_ref().map_or(Settle::Plain, |item| {
                Settle::learned(item, self.group, self.ctx.processed_at)
            });
        }
        if !progressed {
            // Conflict with another transaction: back off.
            let ctx = self.ctx;
            self.state.transient += 1;
            if self.state.transient >= ctx.backoff.max_attempts {
                return Err(Error::Conflict(
                    "the usage write stayed contended; retry later".into(),
                ));
            }
            pause(ctx, ctx.backoff.delay(self.state.transient)).await?;
        }
        Ok(())
    }

    /// Events whose record put failed: the record exists (applied before, or
    /// the id taken by another payload). Returns whether any was resolved.
    async fn resolve_existing_records(
        &mut self,
        failed: &impl Fn(usize) -> bool,
        reasons: &[CancelReason],
    ) -> Result<bool, Error> {
        let mut progressed = false;
        let pending = std::mem::take(&mut self.state.pending);
        let mut still = Vec::with_capacity(pending.len());
        for (k, &i) in pending.iter().enumerate() {
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
                    self.stats.requests += 1;
                    let event = self.group.events[i];
                    self.store.event_record_fingerprint(event).await?
                }
            };
            match stored {
                Some(fingerprint) => {
                    self.outcomes[i] = Some(Ok(Recorded {
                        fingerprint,
                        applied_now: false,
                    }));
                    progressed = true;
                }
                None => still.push(i),
            }
        }
        self.state.pending = still;
        Ok(progressed)
    }

    /// The quota item's windows were not as planned: learn them from the
    /// failed condition (or, on an engine without `ALL_OLD`, read them).
    async fn learn_quota(
        &mut self,
        planned: &Planned,
        reasons: &[CancelReason],
    ) -> Result<(), Error> {
        replanned(
            &mut self.state,
            "the quota item's windows kept moving; retry later",
        )?;
        let group = self.group;
        let learned = match reasons[planned.quota_at].item.as_ref() {
            Some(item) => starts_from_item(item)?,
            // No item came back: there is none, unless this plan already
            // assumed that (an engine without ALL_OLD); then read it.
            None if planned.starts != Some([None; 3]) => [None; 3],
            None => {
                self.stats.requests += 1;
                self.store.quota_starts(group.user, group.platform).await?
            }
        };
        self.known.set_starts(group.platform, learned);
        Ok(())
    }

    /// Another writer moved the account on. The failed condition returned it:
    /// retry at once with it. A hot account loses repeatedly; then pause
    /// (jittered) and read it fresh, as the returned state is stale once
    /// others wrote meanwhile.
    async fn learn_account(&mut self, reason: &CancelReason) -> Result<(), Error> {
        let state = &mut self.state;
        state.contended += 1;
        if state.contended >= CREDIT_BACKOFF.max_attempts {
            return Err(Error::Conflict(format!(
                "the credit account of {} is busy; retry later",
                self.group.user
            )));
        }
        state.account = None;
        if state.contended <= IMMEDIATE_ACCOUNT_RETRIES {
            state.account = reason
                .item
                .as_ref()
                .and_then(|item| account_from_all_old(self.group.user, item));
        } else {
            pause(self.ctx, CREDIT_BACKOFF.delay(state.contended)).await?;
        }
        Ok(())
    }
}

/// Counts a re-plan after a failed condition; too many is a 409.
fn replanned(state: &mut WriteState, exhausted: &str) -> Result<(), Error> {
    state.replans += 1;
    if state.replans > MAX_REPLANS {
        return Err(Error::Conflict(exhausted.into()));
    }
    Ok(())
}
