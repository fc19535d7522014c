import type { LedgerEntryResponseDoc, WalletResponseDoc } from './dto/wallet-responses.dto';
import type { LedgerEntry } from './ledger-entry.entity';
import type { Wallet } from './wallet.entity';

/** The API's picture of a wallet (API.md §6); an entity change never silently changes it. */
/** `thresholds`: the wallet's low-balance thresholds in force (see WalletsService.thresholds). */
export function walletView(w: Wallet, thresholds: string[]): WalletResponseDoc {
  return {
    user_id: w.userId,
    plan: w.plan,
    status: w.status,
    balance: w.balance.toString(),
    held: w.held.toString(),
    credits: w.balance.minus(w.held).toString(),
    low_balance_thresholds: thresholds,
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
    created_at: e.createdAt.toISOString(),
  };
}

/** The answer types, under the names the services use (one declaration: the response classes). */
export type WalletView = WalletResponseDoc;
export type LedgerEntryView = LedgerEntryResponseDoc;
