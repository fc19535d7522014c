import { ApiProperty } from '@nestjs/swagger';
import { KeyDiff, MONEY_ANSWER, NoKeyDrift } from '../../common/openapi';
import { PRICED_USAGE_EXAMPLE, PricedUsageDoc } from '../../pricing/dto/pricing-responses.dto';
import { LEDGER_ENTRY_EXAMPLE, LedgerEntryResponseDoc } from '../../wallets/dto/wallet-responses.dto';
import type { HoldStatus } from '../../ledger/hold-states';
import type { QueueSettlementService } from '../queue-settlement.service';
import type { failureView } from '../settlement-failures.service';

/*
 * The answers of the credits process, declared once: CreditsProcessService's methods return these
 * classes' types (its views build plain objects of these shapes), and the decorators document them.
 */

type FailureView = ReturnType<typeof failureView>;
type ReplayView = Awaited<ReturnType<QueueSettlementService['replay']>>;
type DiscardView = Awaited<ReturnType<QueueSettlementService['discard']>>;

const USAGE_KEY = '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10';
const USAGE_KEY_PROPERTY = {
  description: 'Names the authorization: pass it to the settlement.',
  format: 'uuid',
  example: USAGE_KEY,
} as const;

export const START_EXAMPLE = {
  status: 'accessible',
  usage_key: USAGE_KEY,
  user_id: 'u1',
  feature_endpoint_id: 'ai_chat_v1',
  credits: '95.000000',
  balance: '100.000000',
  held: '5.000000',
  hold_amount: '5.000000',
  expires_at: '2026-11-25T10:15:00.000Z',
} satisfies StartResponseDoc;

export class StartResponseDoc {
  @ApiProperty({ enum: ['accessible'], example: 'accessible' })
  status!: 'accessible';

  @ApiProperty(USAGE_KEY_PROPERTY)
  usage_key!: string;

  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;

  @ApiProperty({ description: 'Available after the hold: balance − held.', ...MONEY_ANSWER, example: '95.000000' })
  credits!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '100.000000' })
  balance!: string;

  @ApiProperty({ description: 'All live holds of the wallet, this one included.', ...MONEY_ANSWER, example: '5.000000' })
  held!: string;

  @ApiProperty({
    description: "This hold: the feature's min_holding_credits, or with an estimate max(min_holding_credits, the estimate's quote).",
    ...MONEY_ANSWER,
    example: '5.000000',
  })
  hold_amount!: string;

  @ApiProperty({
    description: 'When the hold lapses (it can still be settled late).',
    format: 'date-time',
    example: '2026-11-25T10:15:00.000Z',
  })
  expires_at!: string;
}

export const SETTLEMENT_EXAMPLE = {
  status: 'settled',
  usage_key: USAGE_KEY,
  transaction_id: '1042',
  user_id: 'u1',
  feature_endpoint_id: 'ai_chat_v1',
  credits_charged: '0.720000',
  credits: '99.280000',
  balance: '99.280000',
  held: '0.000000',
  late: false,
  final: true,
  credits_charged_total: '0.720000',
  usages: [PRICED_USAGE_EXAMPLE],
} satisfies SettlementResponseDoc;

export class SettlementResponseDoc {
  @ApiProperty({
    description: "`already_settled`: a repeat; nothing more was charged and the figures are the first settlement's.",
    enum: ['settled', 'already_settled'],
    example: 'settled',
  })
  status!: 'settled' | 'already_settled';

  @ApiProperty({ ...USAGE_KEY_PROPERTY, description: 'The hold settled, or the new key of a direct charge.' })
  usage_key!: string;

  @ApiProperty({ description: 'The ledger entry of the charge.', example: '1042' })
  transaction_id!: string;

  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;

  @ApiProperty({ description: 'Σ usage credits + fixed_cost, rounded half-up once.', ...MONEY_ANSWER, example: '0.720000' })
  credits_charged!: string;

  @ApiProperty({ description: 'Available after the settlement (may be negative).', ...MONEY_ANSWER, example: '99.280000' })
  credits!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '99.280000' })
  balance!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '0.000000' })
  held!: string;

  @ApiProperty({ description: 'True when the hold had expired before the settlement (it is settled all the same).', example: false })
  late!: boolean;

  @ApiProperty({
    description: 'False for an increment (final: false): the hold stays open. True when this settlement closed the usage.',
    example: true,
  })
  final!: boolean;

  @ApiProperty({
    description: 'Every charge of this usage so far, this one included (= credits_charged for a usage settled at once).',
    ...MONEY_ANSWER,
    example: '0.720000',
  })
  credits_charged_total!: string;

  @ApiProperty({ type: [PricedUsageDoc] })
  usages!: PricedUsageDoc[];
}

export const EXTEND_EXAMPLE = {
  status: 'extended',
  usage_key: USAGE_KEY,
  expires_at: '2026-11-25T10:30:00.000Z',
  hold_amount: '10.000000',
  credits: '90.000000',
  balance: '100.000000',
  held: '10.000000',
} satisfies ExtendResponseDoc;

/** The answer of POST /extend (§13). */
export class ExtendResponseDoc {
  @ApiProperty({ enum: ['extended'], example: 'extended' })
  status!: 'extended';

  @ApiProperty(USAGE_KEY_PROPERTY)
  usage_key!: string;

  @ApiProperty({ description: 'The new expiry: now + ttl_seconds.', format: 'date-time', example: '2026-11-25T10:30:00.000Z' })
  expires_at!: string;

  @ApiProperty({ description: 'The hold after the extend (grown by additional_hold).', ...MONEY_ANSWER, example: '10.000000' })
  hold_amount!: string;

  @ApiProperty({ description: 'Available after the extend: balance − held.', ...MONEY_ANSWER, example: '90.000000' })
  credits!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '100.000000' })
  balance!: string;

  @ApiProperty({ description: 'All live holds of the wallet, this one included.', ...MONEY_ANSWER, example: '10.000000' })
  held!: string;
}

export const CANCEL_EXAMPLE = { status: 'cancelled', usage_key: USAGE_KEY, released: '5.000000' } satisfies CancelResponseDoc;

export class CancelResponseDoc {
  @ApiProperty({ enum: ['cancelled'], example: 'cancelled' })
  status!: 'cancelled';

  @ApiProperty(USAGE_KEY_PROPERTY)
  usage_key!: string;

  @ApiProperty({
    description: 'Credits released by this call (0 when repeated or when the hold had expired).',
    ...MONEY_ANSWER,
    example: '5.000000',
  })
  released!: string;
}

export const USAGE_EXAMPLE = {
  usage_key: USAGE_KEY,
  status: 'settled',
  user_id: 'u1',
  feature_endpoint_id: 'ai_chat_v1',
  hold_amount: '5.000000',
  direct_charge: false,
  idempotency_key: null,
  key_id: null,
  created_at: '2026-11-25T10:00:00.000Z',
  expires_at: '2026-11-25T10:15:00.000Z',
  closed_at: '2026-11-25T10:01:00.000Z',
  late: false,
  settlement: SETTLEMENT_EXAMPLE,
  credits_refunded: '0.000000',
  ledger_entries: [{ ...LEDGER_ENTRY_EXAMPLE, amount: '-0.720000', balance_after: '99.280000' }],
} satisfies UsageResponseDoc;

export class UsageResponseDoc {
  @ApiProperty(USAGE_KEY_PROPERTY)
  usage_key!: string;

  @ApiProperty({ enum: ['held', 'settled', 'cancelled', 'expired'], example: 'settled' })
  status!: HoldStatus;

  @ApiProperty({ example: 'u1' })
  user_id!: string;

  @ApiProperty({ example: 'ai_chat_v1' })
  feature_endpoint_id!: string;

  @ApiProperty({ description: 'Credits held by /start (0 for a direct charge).', ...MONEY_ANSWER, example: '5.000000' })
  hold_amount!: string;

  @ApiProperty({ description: 'True for a settlement sent without usage_key.', example: false })
  direct_charge!: boolean;

  @ApiProperty({ type: 'string', nullable: true, example: null })
  idempotency_key!: string | null;

  @ApiProperty({
    description: 'The API key record that started it (API.md §11); null for environment keys.',
    type: 'string',
    format: 'uuid',
    nullable: true,
    example: null,
  })
  key_id!: string | null;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:00:00.000Z' })
  created_at!: string;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:15:00.000Z' })
  expires_at!: string;

  @ApiProperty({ type: 'string', format: 'date-time', nullable: true, example: '2026-11-25T10:01:00.000Z' })
  closed_at!: string | null;

  @ApiProperty({ example: false })
  late!: boolean;

  @ApiProperty({
    description: 'The settlement answer (null while held, cancelled or expired).',
    type: () => SettlementResponseDoc,
    nullable: true,
  })
  settlement!: SettlementResponseDoc | null;

  @ApiProperty({ description: 'What its refunds gave back (API.md §9).', ...MONEY_ANSWER, example: '0.000000' })
  credits_refunded!: string;

  @ApiProperty({
    description: 'The ledger entries this authorization wrote (its charge, then its refunds).',
    type: [LedgerEntryResponseDoc],
  })
  ledger_entries!: LedgerEntryResponseDoc[];
}

export const SETTLEMENT_FAILURE_EXAMPLE = {
  id: '7',
  queue: 'credits_process_end_multimodel_queue',
  payload: '{"user_id":"u1","feature_endpoint_id":"ai_chat_v1","usages":[{"ai_model":"gpt-unknown","input_tokens":10,"output_tokens":5}]}',
  payload_encoding: 'utf8',
  error_status: 'unknown_model',
  reason: 'No price is set for ai_model "gpt-unknown".',
  status: 'pending',
  attempts: 1,
  resolution: null,
  created_at: '2026-11-25T10:02:00.000Z',
  resolved_at: null,
} satisfies FailureView;

export class SettlementFailureResponseDoc {
  @ApiProperty({ example: '7' })
  id!: string;

  @ApiProperty({
    enum: ['credits_process_end_multimodel_queue', 'credits_process_end_queue'],
    example: 'credits_process_end_multimodel_queue',
  })
  queue!: string;

  @ApiProperty({ description: 'The message body, whole (base64 when it was not UTF-8 text).', example: SETTLEMENT_FAILURE_EXAMPLE.payload })
  payload!: string;

  @ApiProperty({ enum: ['utf8', 'base64'], example: 'utf8' })
  payload_encoding!: string;

  @ApiProperty({ description: 'The error word of the last attempt.', example: 'unknown_model' })
  error_status!: string;

  @ApiProperty({ example: 'No price is set for ai_model "gpt-unknown".' })
  reason!: string;

  @ApiProperty({ enum: ['pending', 'replayed', 'discarded'], example: 'pending' })
  status!: string;

  @ApiProperty({ type: 'integer', example: 1 })
  attempts!: number;

  @ApiProperty({
    description: 'The outcome once replayed or discarded.',
    type: 'object',
    additionalProperties: true,
    nullable: true,
    example: null,
  })
  resolution!: Record<string, unknown> | null;

  @ApiProperty({ format: 'date-time', example: '2026-11-25T10:02:00.000Z' })
  created_at!: string;

  @ApiProperty({ type: 'string', format: 'date-time', nullable: true, example: null })
  resolved_at!: string | null;
}

export const REPLAY_EXAMPLE = {
  status: 'replayed',
  settlement: SETTLEMENT_EXAMPLE,
  failure: {
    ...SETTLEMENT_FAILURE_EXAMPLE,
    status: 'replayed',
    resolution: { ...SETTLEMENT_EXAMPLE },
    resolved_at: '2026-11-25T11:00:00.000Z',
  },
} satisfies ReplayView;

export class ReplayResponseDoc {
  @ApiProperty({ enum: ['replayed'], example: 'replayed' })
  status!: string;

  @ApiProperty({ type: () => SettlementResponseDoc })
  settlement!: SettlementResponseDoc;

  @ApiProperty({ type: () => SettlementFailureResponseDoc })
  failure!: SettlementFailureResponseDoc;
}

export const DISCARD_EXAMPLE = {
  status: 'discarded',
  failure: { ...SETTLEMENT_FAILURE_EXAMPLE, status: 'discarded', resolution: { discarded: true }, resolved_at: '2026-11-25T11:00:00.000Z' },
} satisfies DiscardView;

export class DiscardResponseDoc {
  @ApiProperty({ enum: ['discarded'], example: 'discarded' })
  status!: string;

  @ApiProperty({ type: () => SettlementFailureResponseDoc })
  failure!: SettlementFailureResponseDoc;
}

type _FailureDoc = NoKeyDrift<KeyDiff<FailureView, SettlementFailureResponseDoc>>;
type _ReplayDoc = NoKeyDrift<KeyDiff<ReplayView, ReplayResponseDoc>>;
type _DiscardDoc = NoKeyDrift<KeyDiff<DiscardView, DiscardResponseDoc>>;

export class ReturnedCreditsDoc {
  @ApiProperty({ format: 'uuid', description: 'The grant the credits went back to.' })
  grant_id!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '0.500000' })
  amount!: string;

  @ApiProperty({ description: 'True when the grant had expired or been voided: the part was expired again at once.', example: false })
  expired!: boolean;
}

export class RefundResponseDoc {
  @ApiProperty({ enum: ['refunded', 'already_refunded'], example: 'refunded' })
  status!: 'refunded' | 'already_refunded';

  @ApiProperty(USAGE_KEY_PROPERTY)
  usage_key!: string;

  @ApiProperty({ description: 'The refund ledger entry id.', example: '1043' })
  transaction_id!: string;

  @ApiProperty({ description: 'What this refund gave back.', ...MONEY_ANSWER, example: '0.500000' })
  amount!: string;

  @ApiProperty({ description: 'What the usage was charged.', ...MONEY_ANSWER, example: '0.720000' })
  credits_charged!: string;

  @ApiProperty({ description: 'What its refunds gave back in all, this one included.', ...MONEY_ANSWER, example: '0.500000' })
  credits_refunded!: string;

  @ApiProperty({ description: "The wallet's balance after the refund (and any re-expiry).", ...MONEY_ANSWER, example: '99.780000' })
  balance!: string;

  @ApiProperty({ ...MONEY_ANSWER, example: '0.000000' })
  held!: string;

  @ApiProperty({ description: 'Available credits: balance − held.', ...MONEY_ANSWER, example: '99.780000' })
  credits!: string;

  @ApiProperty({ description: "What of the refund cancelled the wallet's debt.", ...MONEY_ANSWER, example: '0.000000' })
  debt_cancelled!: string;

  @ApiProperty({ type: () => [ReturnedCreditsDoc], description: 'Where the credits went, last drawn first.' })
  returned!: ReturnedCreditsDoc[];
}

export const REFUND_EXAMPLE = {
  status: 'refunded',
  usage_key: SETTLEMENT_EXAMPLE.usage_key,
  transaction_id: '1043',
  amount: '0.500000',
  credits_charged: '0.720000',
  credits_refunded: '0.500000',
  balance: '99.780000',
  held: '0.000000',
  credits: '99.780000',
  debt_cancelled: '0.000000',
  returned: [{ grant_id: '3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e', amount: '0.500000', expired: false }],
} satisfies RefundResponseDoc;
