import type { GrantResponseDoc } from './dto/grant-responses.dto';
import type { Grant } from './grant.entity';

/** The API's picture of a grant (API.md §8). */
export function grantView(g: Grant): GrantResponseDoc {
  return {
    grant_id: g.grantId,
    user_id: g.userId,
    kind: g.kind,
    amount: g.amount.toString(),
    remaining: g.remaining.toString(),
    priority: g.priority,
    expires_at: g.expiresAt?.toISOString() ?? null,
    status: g.status,
    origin: g.origin,
    debt_paid: g.debtPaid.toString(),
    expired: g.expired.toString(),
    voided: g.voided.toString(),
    refunded: g.refunded.toString(),
    description: g.description,
    void_reason: g.voidReason,
    created_at: g.createdAt.toISOString(),
    closed_at: g.closedAt?.toISOString() ?? null,
  };
}
