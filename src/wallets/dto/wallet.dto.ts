import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsIn, IsString, Length, Matches } from 'class-validator';
import { Optional } from '../../common/validation';
import { IsMoney } from '../../common/money.validator';
import { ApiMoneyField } from '../../common/openapi';
import { PageQueryDto } from '../../common/pagination';
import type { WalletStatus } from '../wallet.entity';

/** Identifiers partners send: printable, no control characters. */
export const ID_PATTERN = /^[^\s\p{C}][^\p{C}]*$/u;
export const ID_MESSAGE = 'must not start with a space nor contain control characters';
/** How the documentation states ID_PATTERN (a JSON-schema pattern cannot say \p{C} portably). */
export const ID_RULE = 'Printable: no control characters, no leading space.';

export class CreateWalletDto {
  @ApiProperty({ description: `The partner's user id. ${ID_RULE}`, minLength: 1, maxLength: 128, example: 'u1' })
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  user_id!: string;

  @ApiPropertyOptional({
    description: `Plan name, checked against a feature's allowed_plans (default "free"). ${ID_RULE}`,
    minLength: 1,
    maxLength: 64,
    example: 'pro',
  })
  @Optional()
  @IsString()
  @Length(1, 64)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  plan?: string;

  @ApiMoneyField({
    description: 'Credits the wallet starts with (written to the ledger as an initial entry; default 0).',
    example: '100.000000',
    required: false,
  })
  @Optional()
  @IsMoney()
  initial_credits?: string | number;
}

export class UpdateWalletDto {
  @ApiPropertyOptional({ description: `New plan name. ${ID_RULE}`, minLength: 1, maxLength: 64, example: 'pro' })
  @Optional()
  @IsString()
  @Length(1, 64)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  plan?: string;

  @ApiPropertyOptional({
    description: 'A suspended wallet is refused by /start (403 wallet_suspended); settlements still apply.',
    enum: ['active', 'suspended'],
    example: 'suspended',
  })
  @Optional()
  @IsIn(['active', 'suspended'])
  status?: WalletStatus;

  @ApiPropertyOptional({
    description:
      'Available-credit levels below which `wallet.low_balance` is sent (API.md §10): positive decimal strings, at most 5. ' +
      '`[]` = none; `null` = the default of the pricing settings (`default_low_balance_thresholds`).',
    type: [String],
    maxItems: 5,
    nullable: true,
    example: ['10', '1'],
  })
  @Optional({ nullable: true })
  @IsArray()
  @ArrayMaxSize(5)
  @ArrayUnique()
  @IsMoney({ nonZero: true }, { each: true })
  low_balance_thresholds?: (string | number)[] | null;
}

export class TopUpDto {
  @ApiMoneyField({ description: 'Credits to add; positive, not zero.', example: '50.000000' })
  @IsMoney({ nonZero: true })
  amount!: string | number;

  @ApiPropertyOptional({
    description: 'Makes the top-up safe to repeat: a second top-up with this key adds nothing.',
    minLength: 1,
    maxLength: 128,
    example: 'invoice-2026-11-0042',
  })
  @Optional()
  @IsString()
  @Length(1, 128)
  idempotency_key?: string;

  @ApiPropertyOptional({ description: 'Kept on the ledger entry.', minLength: 1, maxLength: 500, example: 'November subscription' })
  @Optional()
  @IsString()
  @Length(1, 500)
  description?: string;
}

export class AdjustDto {
  @ApiMoneyField({
    description: 'Signed correction: negative debits the wallet (it may go below zero). Not zero.',
    example: '-2.500000',
    allowNegative: true,
  })
  @IsMoney({ allowNegative: true, nonZero: true })
  amount!: string | number;

  @ApiProperty({ description: 'Why: kept on the ledger entry.', minLength: 1, maxLength: 500, example: 'refund of a failed generation' })
  @IsString()
  @Length(1, 500)
  reason!: string;
}

export class TransactionsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({
    description: 'Only the entries of this authorization (a usage_key from /start or a settlement).',
    minLength: 1,
    maxLength: 64,
    example: '6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10',
  })
  @Optional()
  @IsString()
  @Length(1, 64)
  usage_key?: string;
}

export class WalletsQueryDto extends PageQueryDto {
  @ApiPropertyOptional({
    description: 'Only wallets whose user_id starts with this text (case-sensitive).',
    minLength: 1,
    maxLength: 128,
    example: 'demo',
  })
  @Optional()
  @IsString()
  @Length(1, 128)
  user_id_prefix?: string;
}
