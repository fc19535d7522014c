import { ApiProperty } from '@nestjs/swagger';
import { MONEY_ANSWER } from '../../common/openapi';
import { LEDGER_ENTRY_KINDS, type LedgerEntryKind } from '../ledger-entry.entity';
import type { WalletStatus } from '../wallet.entity';

/*
 * The wallet answers (API.md §6), declared once. These classes are never instantiated: the views
 * in wallets.views.ts and the services return plain objects typed by them, and the decorators
 * document them.
 */

export class GrantFiguresDoc {
  @ApiProperty({ ...MONEY_ANSWER, example: '90.000000' })
  paid!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '10.000000' })
  promotional!: string;
}

export class NextExpiryDoc {
  @ApiProperty({ format: 'date-time', example: '2026-12-31T00:00:00.000Z' })
  at!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '10.000000' })
  amount!: string;
}

export const WALLET_EXAMPLE = {
  user_id: 'u1',
  plan: 'pro',
  status: 'active',
  balance: '100.000000',
  held: '5.000000',
  credits: '95.000000',
  low_balance_thresholds: ['10.000000', '1.000000'],
  grants: { paid: '90.000000', promotional: '10.000000' },
  next_expiry: { at: '2026-12-31T00:00:00.000Z', amount: '10.000000' },
  created_at: '2026-11-25T10:00:00.000Z',
  updated_at: '2026-11-25T10:05:00.000Z',
} satisfies WalletResponseDoc;

export class WalletResponseDoc {
  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ example: 'pro' })
  plan!: string;

  @ApiProperty({ enum: ['active', 'suspended'], example: 'active' })
  status!: WalletStatus;

  @ApiProperty({ description: 'Credits on the wallet (may be negative after a settlement).', ...MONEY_ANSWER, example: '100.000000' })
  balance!: string;

  @ApiProperty({ description: 'Credits reserved by live holds.', ...MONEY_ANSWER, example: '5.000000' })
  held!: string;

  @ApiProperty({ description: 'Available credits: balance − held.', ...MONEY_ANSWER, example: '95.000000' })
  credits!: string;

  @ApiProperty({
    description: "The wallet's low-balance thresholds in force (its own, or the settings' default), highest first.",
    type: [String],
    example: ['10.000000', '1.000000'],
  })
  low_balance_thresholds!: string[];

  @ApiProperty({ description: 'What its active grants hold, by kind (API.md §8).', type: () => GrantFiguresDoc })
  grants!: GrantFiguresDoc;

  @ApiProperty({
    description: 'The soonest expiry of a grant with credits left, and what expires then; null when none expires.',
    type: () => NextExpiryDoc,
    nullable: true,
  })
  next_expiry!: NextExpiryDoc | null;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  created_at!: string;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:05:00.000Z' })
  updated_at!: string;
}

export const LEDGER_ENTRY_EXAMPLE = {
  id: '1042',
  user_id: 'u1',
  kind: 'charge',
  amount: '-0.123457',
  balance_after: '99.876543',
  held_after: '0.000000',
  usage_key: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
  idempotency_key: null,
  description: 'usage of ai_chat_v1',
  metadata: { channel: 'http', feature_endpoint_id: 'ai_chat_v1', late: false },
  key_id: null,
  created_at: '2026-11-25T10:06:00.000Z',
} satisfies LedgerEntryResponseDoc;

export class LedgerEntryResponseDoc {
  @ApiProperty({ description: 'Ledger entry id (a bigint as a string); orders the history.', example: '1042' })
  id!: string;

  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ enum: LEDGER_ENTRY_KINDS, example: 'charge' })
  kind!: LedgerEntryKind;

  @ApiProperty({ description: 'Signed: positive credits the wallet, negative debits it.', ...MONEY_ANSWER, example: '-0.123457' })
  amount!: string;

  @ApiProperty({ description: 'The balance right after this entry.', ...MONEY_ANSWER, example: '99.876543' })
  balance_after!: string;

  @ApiProperty({ description: "The wallet's held credits right after this entry.", ...MONEY_ANSWER, example: '0.000000' })
  held_after!: string;

  @ApiProperty({ type: 'string', nullable: true, format: 'uuid', example: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10' })
  usage_key!: string | null;

  @ApiProperty({ type: 'string', nullable: true, example: null })
  idempotency_key!: string | null;

  @ApiProperty({ type: 'string', nullable: true, example: 'usage of ai_chat_v1' })
  description!: string | null;

  @ApiProperty({
    description: 'Why the amount is what it is: for a charge the usages, prices, margin and rate it used.',
    type: 'object',
    additionalProperties: true,
    example: LEDGER_ENTRY_EXAMPLE.metadata,
  })
  metadata!: Record<string, unknown>;

  @ApiProperty({
    description: 'The API key record that made it (API.md §11); null for environment keys, queue settlements of no key, and operators.',
    type: 'string',
    format: 'uuid',
    nullable: true,
    example: null,
  })
  key_id!: string | null;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:06:00.000Z' })
  created_at!: string;
}

export const WALLET_CHANGE_EXAMPLE = {
  status: 'applied',
  transaction: {
    ...LEDGER_ENTRY_EXAMPLE,
    kind: 'top_up',
    amount: '50.000000',
    balance_after: '150.000000',
    usage_key: null,
    idempotency_key: 'invoice-2026-11-0042',
    description: 'November subscription',
    metadata: {},
  },
  wallet: { ...WALLET_EXAMPLE, balance: '150.000000', credits: '145.000000' },
  grant_id: '3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e',
  debt_paid: '0.000000',
} satisfies WalletChangeResponseDoc;

export class WalletChangeResponseDoc {
  @ApiProperty({
    description: '`already_applied` when a top-up with the same idempotency_key was applied before (nothing added).',
    enum: ['applied', 'already_applied'],
    example: 'applied',
  })
  status!: 'applied' | 'already_applied';

  @ApiProperty({ type: () => LedgerEntryResponseDoc })
  transaction!: LedgerEntryResponseDoc;

  @ApiProperty({ type: () => WalletResponseDoc })
  wallet!: WalletResponseDoc;

  @ApiProperty({
    description: 'The paid grant the credits became (API.md §8); null for a negative adjustment, which draws like a charge.',
    type: 'string',
    format: 'uuid',
    nullable: true,
  })
  grant_id!: string | null;

  @ApiProperty({ description: "What of the credits paid the wallet's debt first.", ...MONEY_ANSWER, example: '0.000000' })
  debt_paid!: string;
}

export class WalletCreatedResponseDoc extends WalletResponseDoc {
  @ApiProperty({
    description: 'The paid grant initial_credits became; null without initial credits.',
    type: 'string',
    format: 'uuid',
    nullable: true,
  })
  grant_id!: string | null;
}

export class GrantMismatchDoc {
  @ApiProperty({ format: 'uuid' })
  grant_id!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '10.000000' })
  remaining!: string;

  @ApiProperty({ description: 'What its ledger says it should hold.', ...MONEY_ANSWER, example: '9.000000' })
  expected!: string;
}

export class MismatchDoc {
  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '100.000000' })
  balance!: string;

  @ApiProperty({ description: 'Σ of the wallet ledger.', ...MONEY_ANSWER, example: '99.000000' })
  ledger_sum!: string;

  @ApiProperty({ ...MONEY_ANSWER, nullable: true, example: '99.000000' })
  last_balance_after!: string | null;

  @ApiProperty({ ...MONEY_ANSWER, example: '5.000000' })
  held!: string;

  @ApiProperty({ description: 'Σ of the live holds.', ...MONEY_ANSWER, example: '5.000000' })
  live_holds!: string;

  @ApiProperty({
    description: "Σ remaining of the wallet's grants − its debt (must equal balance).",
    ...MONEY_ANSWER,
    example: '100.000000',
  })
  grants_less_debt!: string;

  @ApiProperty({
    description: "The wallet's grants whose remaining ≠ amount − debt paid − Σ draws − expired − voided + refunded.",
    type: () => [GrantMismatchDoc],
  })
  grant_mismatches!: GrantMismatchDoc[];
}

export class ReconciliationResponseDoc {
  @ApiProperty({ type: 'integer', example: 1200 })
  wallets_checked!: number;

  @ApiProperty({
    description: 'Wallets whose balance ≠ Σ ledger or held ≠ Σ live holds; empty when the books are right.',
    type: [MismatchDoc],
    example: [],
  })
  mismatches!: MismatchDoc[];
}
