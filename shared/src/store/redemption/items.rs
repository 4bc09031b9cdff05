//! Redemption items <-> domain types.

use super::*;

pub(super) fn insert_grant(item: &mut Item, grant: &Grant) {
    item.insert("credits".into(), attr::n(grant.credits));
    if let Some(sub) = &grant.subscription {
        item.insert("plan_id".into(), attr::s(sub.plan_id.as_str()));
        item.insert("unit".into(), attr::s(sub.unit.as_str()));
        item.insert("quantity".into(), attr::n(sub.quantity));
    }
}

pub(super) fn grant_from_item(item: &Item) -> Result<Grant, Error> {
    let subscription = match attr::opt_s(item, "plan_id") {
        None => None,
        Some(plan) => Some(SubscriptionGrant {
            plan_id: PlanId::parse(plan)?,
            unit: Unit::parse(attr::get_s(item, "unit")?).ok_or_else(|| corrupt("unit"))?,
            quantity: u32::try_from(attr::get_i64(item, "quantity")?)
                .map_err(|_| corrupt("quantity"))?,
        }),
    };
    Ok(Grant {
        credits: attr::get_i64(item, "credits")?,
        subscription,
    })
}

pub(super) fn code_item(batch: &Batch, index: usize, code: &GeneratedCode) -> Item {
    let spec = &batch.spec;
    let mut item = code_key_item(&code.key);
    item.insert(
        keys::GSI1_PK.into(),
        attr::s(batch_codes_index_pk(&batch.batch_id)),
    );
    item.insert(keys::GSI1_SK.into(), attr::s(format!("{index:04}")));
    item.insert("code".into(), attr::s(&code.display));
    item.insert("code_key".into(), attr::s(code.key.as_str()));
    item.insert("batch_id".into(), attr::s(batch.batch_id.as_str()));
    if let Some(name) = &spec.batch_name {
        item.insert("batch_name".into(), attr::s(name));
    }
    insert_grant(&mut item, &spec.grant);
    item.insert("max_uses".into(), attr::n(spec.max_uses));
    item.insert("used_count".into(), attr::n(0));
    item.insert("enabled".into(), AttributeValue::Bool(true));
    if let Some(at) = spec.expires_at {
        item.insert("expires_at".into(), attr::s(timestamp(at)));
        // Conditions have no now(): the redeem condition compares this with :now_ms.
        item.insert("expires_ms".into(), attr::n(at.timestamp_millis()));
    }
    item.insert("created_at".into(), attr::s(timestamp(batch.created_at)));
    item.insert("updated_at".into(), attr::s(timestamp(batch.created_at)));
    item
}

pub(super) fn code_from_item(item: &Item) -> Result<RedemptionCode, Error> {
    Ok(RedemptionCode {
        key: CodeKey::from_stored(attr::get_s(item, "code_key")?),
        display: attr::get_s(item, "code")?.to_string(),
        batch_id: BatchId::parse(attr::get_s(item, "batch_id")?)?,
        batch_name: attr::opt_s(item, "batch_name").map(str::to_string),
        grant: grant_from_item(item)?,
        max_uses: attr::get_i64(item, "max_uses")?,
        used_count: attr::get_i64(item, "used_count")?,
        enabled: attr::get_bool(item, "enabled").ok_or_else(|| corrupt("enabled"))?,
        expires_at: opt_time(item, "expires_at")?,
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

pub(super) fn batch_sort(batch: &Batch) -> String {
    format!("{}#{}", timestamp(batch.created_at), batch.batch_id)
}

pub(super) fn batch_item(batch: &Batch, fingerprint: &str, written: usize) -> Item {
    let spec = &batch.spec;
    let mut item = keys::item_key(batch_pk(&batch.batch_id), BATCH_SK);
    item.insert(keys::GSI1_PK.into(), attr::s(BATCHES_INDEX_PK));
    item.insert(keys::GSI1_SK.into(), attr::s(batch_sort(batch)));
    item.insert("batch_id".into(), attr::s(batch.batch_id.as_str()));
    if let Some(name) = &spec.batch_name {
        item.insert("batch_name".into(), attr::s(name));
    }
    if let Some(prefix) = &spec.prefix {
        item.insert("prefix".into(), attr::s(prefix.as_str()));
    }
    item.insert("count".into(), attr::n(spec.count));
    item.insert("written".into(), attr::n(written));
    item.insert(
        "complete".into(),
        AttributeValue::Bool(written == batch.codes.len()),
    );
    item.insert("fingerprint".into(), attr::s(fingerprint));
    insert_grant(&mut item, &spec.grant);
    item.insert("max_uses".into(), attr::n(spec.max_uses));
    if let Some(at) = spec.expires_at {
        item.insert("expires_at".into(), attr::s(timestamp(at)));
    }
    item.insert("created_at".into(), attr::s(timestamp(batch.created_at)));
    item.insert("created_by".into(), attr::s(&batch.created_by));
    item
}

pub(super) fn plan_item(batch_id: &BatchId, codes: &[GeneratedCode]) -> Item {
    let mut item = keys::item_key(batch_pk(batch_id), PLAN_SK);
    item.insert("codes".into(), codes_attr(codes));
    item
}

pub(super) fn codes_attr(codes: &[GeneratedCode]) -> AttributeValue {
    AttributeValue::L(codes.iter().map(|c| attr::s(&c.display)).collect())
}

pub(super) fn codes_from_plan(item: &Item) -> Result<Vec<GeneratedCode>, Error> {
    let list = item
        .get("codes")
        .and_then(|v| v.as_l().ok())
        .ok_or_else(|| corrupt("batch plan without codes"))?;
    list.iter()
        .map(|v| {
            let display = v.as_s().map_err(|_| corrupt("batch plan code"))?;
            Ok(GeneratedCode {
                key: CodeKey::parse(display)?,
                display: display.clone(),
            })
        })
        .collect()
}

/// The batch as stored, with the codes of its plan.
pub(super) fn batch_from_items(batch: &Item, codes: &[GeneratedCode]) -> Result<Batch, Error> {
    let count = usize::try_from(attr::get_i64(batch, "count")?).map_err(|_| corrupt("count"))?;
    Ok(Batch {
        batch_id: BatchId::parse(attr::get_s(batch, "batch_id")?)?,
        spec: BatchSpec {
            count,
            prefix: attr::opt_s(batch, "prefix")
                .map(Prefix::parse)
                .transpose()?,
            grant: grant_from_item(batch)?,
            max_uses: attr::get_i64(batch, "max_uses")?,
            expires_at: opt_time(batch, "expires_at")?,
            batch_name: attr::opt_s(batch, "batch_name").map(str::to_string),
        },
        codes: codes.iter().map(|c| c.display.clone()).collect(),
        created_at: get_time(batch, "created_at")?,
        created_by: attr::get_s(batch, "created_by")?.to_string(),
    })
}

pub(super) fn redemption_item(r: &Redemption) -> Item {
    let mut item = keys::item_key(
        code_pk(&r.code_key),
        format!("{REDEMPTION_SK_PREFIX}{}", r.user_id),
    );
    item.insert(
        keys::GSI1_PK.into(),
        attr::s(user_redemptions_index_pk(&r.user_id)),
    );
    item.insert(
        keys::GSI1_SK.into(),
        attr::s(format!("{}#{}", timestamp(r.redeemed_at), r.code_key)),
    );
    item.insert("code".into(), attr::s(&r.code));
    item.insert("code_key".into(), attr::s(r.code_key.as_str()));
    item.insert("batch_id".into(), attr::s(r.batch_id.as_str()));
    item.insert("user_id".into(), attr::s(r.user_id.as_str()));
    item.insert("credits_granted".into(), attr::n(r.credits_granted));
    item.insert("balance_after".into(), attr::n(r.balance_after));
    if let Some(id) = &r.transaction_id {
        item.insert("transaction_id".into(), attr::s(id));
    }
    if let Some(s) = &r.subscription {
        item.insert("plan_id".into(), attr::s(s.plan_id.as_str()));
        item.insert("unit".into(), attr::s(s.unit.as_str()));
        item.insert("quantity".into(), attr::n(s.quantity));
        if let Some(prev) = s.previous_expires_at {
            item.insert("previous_expires_at".into(), attr::s(timestamp(prev)));
        }
        item.insert("sub_expires_at".into(), attr::s(timestamp(s.expires_at)));
    }
    item.insert("is_new".into(), AttributeValue::Bool(r.is_new));
    item.insert("redeemed_at".into(), attr::s(timestamp(r.redeemed_at)));
    item
}

pub(super) fn redemption_from_item(item: &Item) -> Result<Redemption, Error> {
    let subscription = match attr::opt_s(item, "plan_id") {
        None => None,
        Some(plan) => Some(SubscriptionChange {
            plan_id: PlanId::parse(plan)?,
            unit: Unit::parse(attr::get_s(item, "unit")?).ok_or_else(|| corrupt("unit"))?,
            quantity: u32::try_from(attr::get_i64(item, "quantity")?)
                .map_err(|_| corrupt("quantity"))?,
            previous_expires_at: opt_time(item, "previous_expires_at")?,
            expires_at: get_time(item, "sub_expires_at")?,
        }),
    };
    Ok(Redemption {
        code: attr::get_s(item, "code")?.to_string(),
        code_key: CodeKey::from_stored(attr::get_s(item, "code_key")?),
        batch_id: BatchId::parse(attr::get_s(item, "batch_id")?)?,
        user_id: UserId::parse(attr::get_s(item, "user_id")?)?,
        credits_granted: attr::get_i64(item, "credits_granted")?,
        balance_after: attr::get_i64(item, "balance_after")?,
        transaction_id: attr::opt_s(item, "transaction_id").map(str::to_string),
        subscription,
        is_new: attr::get_bool(item, "is_new").unwrap_or(false),
        redeemed_at: get_time(item, "redeemed_at")?,
    })
}

pub(super) fn subscription_from_item(item: &Item) -> Result<Subscription, Error> {
    Ok(Subscription {
        plan_id: PlanId::parse(attr::get_s(item, "plan_id")?)?,
        expires_at: get_time(item, "expires_at")?,
        version: attr::get_i64(item, "version")?,
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}
