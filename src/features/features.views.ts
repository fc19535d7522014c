import { formatScaled } from '../common/decimal';
import type { FeatureResponseDoc } from './dto/feature-responses.dto';
import type { Feature } from './feature.entity';

/**
 * The API's picture of a feature (STYLE.md §7). Typed as its documentation class: a field added
 * to one and not the other, or of another type, fails to compile, so the document (and the client
 * types generated from it) cannot drift from the answer.
 */
export function featureView(f: Feature, defaultHoldTtlSeconds: number): FeatureResponseDoc {
  return {
    feature_endpoint_id: f.featureEndpointId,
    name: f.name,
    min_holding_credits: f.minHoldingCredits.toString(),
    hold_ttl_seconds: f.holdTtlSeconds ?? defaultHoldTtlSeconds,
    hold_ttl_is_default: f.holdTtlSeconds === null,
    profit_margin: f.profitMargin === null ? null : formatScaled(f.profitMargin),
    fixed_cost: f.fixedCost === null ? null : f.fixedCost.toString(),
    allowed_plans: f.allowedPlans,
    active: f.active,
    price_lock: f.priceLock,
    created_at: f.createdAt.toISOString(),
    updated_at: f.updatedAt.toISOString(),
  };
}
