import { ApiProperty } from '@nestjs/swagger';
import { MONEY_ANSWER } from '../../common/openapi';
import { LEDGER_ENTRY_EXAMPLE, LedgerEntryResponseDoc, WALLET_EXAMPLE, WalletResponseDoc } from '../../wallets/dto/wallet-responses.dto';
import { GRANT_STATUSES, type GrantKind, type GrantStatus } from '../grant.entity';

/** The grant answers (API.md §8), declared once; the views return plain objects typed by them. */
export class GrantResponseDoc {
  @ApiProperty({ format: 'uuid', example: '3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e' })
  grant_id!: string;

  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ enum: ['paid', 'promotional'], example: 'promotional' })
  kind!: GrantKind;

  @ApiProperty({ description: 'Credits granted.', ...MONEY_ANSWER, example: '50.000000' })
  amount!: string;

  @ApiProperty({ description: 'What is left to draw.', ...MONEY_ANSWER, example: '42.500000' })
  remaining!: string;

  @ApiProperty({ type: 'integer', minimum: 0, maximum: 100, example: 10 })
  priority!: number;

  @ApiProperty({ type: 'string', format: 'date-time', nullable: true, example: '2027-01-01T00:00:00.000Z' })
  expires_at!: string | null;

  @ApiProperty({ enum: GRANT_STATUSES, example: 'active' })
  status!: GrantStatus;

  @ApiProperty({
    description: 'How it came: grant, initial (initial_credits), top_up, adjustment, refund, upgrade (the balance before grants).',
    example: 'grant',
  })
  origin!: string;

  @ApiProperty({ description: "What of the amount paid the wallet's debt when it was granted.", ...MONEY_ANSWER, example: '0.000000' })
  debt_paid!: string;

  @ApiProperty({ description: 'What left the balance when it expired.', ...MONEY_ANSWER, example: '0.000000' })
  expired!: string;

  @ApiProperty({ description: 'What left the balance when it was voided.', ...MONEY_ANSWER, example: '0.000000' })
  voided!: string;

  @ApiProperty({ description: 'What refunds gave back to it.', ...MONEY_ANSWER, example: '0.000000' })
  refunded!: string;

  @ApiProperty({ type: 'string', nullable: true, example: 'welcome bonus' })
  description!: string | null;

  @ApiProperty({ type: 'string', nullable: true, example: null })
  void_reason!: string | null;

  @ApiProperty({ format: 'date-time', example: '2026-12-02T10:00:00.000Z' })
  created_at!: string;

  @ApiProperty({
    type: 'string',
    format: 'date-time',
    nullable: true,
    description: 'When it was depleted, expired or voided.',
    example: null,
  })
  closed_at!: string | null;
}

export const GRANT_EXAMPLE = {
  grant_id: '3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e',
  user_id: 'u1',
  kind: 'promotional',
  amount: '50.000000',
  remaining: '50.000000',
  priority: 10,
  expires_at: '2027-01-01T00:00:00.000Z',
  status: 'active',
  origin: 'grant',
  debt_paid: '0.000000',
  expired: '0.000000',
  voided: '0.000000',
  refunded: '0.000000',
  description: 'welcome bonus',
  void_reason: null,
  created_at: '2026-12-02T10:00:00.000Z',
  closed_at: null,
} satisfies GrantResponseDoc;

export class GrantChangeResponseDoc {
  @ApiProperty({
    description: 'create: `applied` | `already_applied` (a repeated idempotency_key, nothing granted); void: `voided` | `already_voided`.',
    enum: ['applied', 'already_applied', 'voided', 'already_voided'],
    example: 'applied',
  })
  status!: 'applied' | 'already_applied' | 'voided' | 'already_voided';

  @ApiProperty({ type: () => GrantResponseDoc })
  grant!: GrantResponseDoc;

  @ApiProperty({
    description: "What of the grant paid the wallet's debt first (create); 0 for a void.",
    ...MONEY_ANSWER,
    example: '0.000000',
  })
  debt_paid!: string;

  @ApiProperty({
    type: () => LedgerEntryResponseDoc,
    nullable: true,
    description: 'Its ledger entry (kind grant or grant_voided); null for a void that removed nothing.',
  })
  transaction!: LedgerEntryResponseDoc | null;

  @ApiProperty({ type: () => WalletResponseDoc })
  wallet!: WalletResponseDoc;
}

export const GRANT_CHANGE_EXAMPLE = {
  status: 'applied',
  grant: GRANT_EXAMPLE,
  debt_paid: '0.000000',
  transaction: {
    ...LEDGER_ENTRY_EXAMPLE,
    kind: 'grant',
    amount: '50.000000',
    balance_after: '150.000000',
    usage_key: null,
    description: 'welcome bonus',
    metadata: { grant_id: GRANT_EXAMPLE.grant_id, debt_paid: '0.000000' },
  },
  wallet: { ...WALLET_EXAMPLE, balance: '150.000000', credits: '145.000000' },
} satisfies GrantChangeResponseDoc;
