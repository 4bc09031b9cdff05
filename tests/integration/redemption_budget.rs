//! What a redemption costs (filled in with the redeem rework).
