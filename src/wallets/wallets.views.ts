import type { LedgerEntryResponseDoc, WalletResponseDoc } from './dto/wallet-responses.dto';
import type { LedgerEntry } from './ledger-entry.entity';
import type { Wallet } from './wallet.entity';

/** What a wallet's view shows besides its row (read by WalletsService.figures). */
export interface WalletFigures {
  /** The low-balance thresholds in force, highest first. */
  thresholds: string[];
  /** Σ remaining of the active grants, by kind. */
  grants: { paid: string; promotional: string };
  nextExpiry: { at: string; amount: string } | null;
}

/** A wallet no query has figures for (none: it has no grants, and the default thresholds). */
export const NO_FIGURES: WalletFigures = { thresholds: [], grants: { paid: '0.000000', promotional: '0.000000' }, nextExpiry: null };

/** The API's picture of a wallet (API.md §6, §8); an entity change never silently changes it. */
export function walletView(w: Wallet, figures: WalletFigures): WalletResponseDoc {
  return {
    user_id: w.userId,
    plan: w.plan,
    status: w.status,
    balance: w.balance.toString(),
    held: w.held.toString(),
    credits: w.balance.minus(w.held).toString(),
    low_balance_thresholds: figures.thresholds,
    grants: figures.grants,
    next_expiry: figures.nextExpiry,
    created_at: w.createdAt.toISOString(),
    updated_at: w.updatedAt.toISOString(),
  };
}

export function ledgerEntryView(e: LedgerEntry): LedgerEntryResponseDoc {
  return {
    id: e.id,
    user_id: e.userId,
    kind: e.kind,
    amount: e.amount.toString(),
    balance_after: e.balanceAfter.toString(),
    held_after: e.heldAfter.toString(),
    usage_key: e.usageKey,
    idempotency_key: e.idempotencyKey,
    description: e.description,
    metadata: e.metadata,
    key_id: e.keyId,
    created_at: e.createdAt.toISOString(),
  };
}

/** The answer types, under the names the services use (one declaration: the response classes). */
export type WalletView = WalletResponseDoc;
export type LedgerEntryView = LedgerEntryResponseDoc;
