import { IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';
import { IsMoney } from '../../common/money.validator';
import { PageQueryDto } from '../../common/pagination';
import type { WalletStatus } from '../wallet.entity';

/** Identifiers partners send: printable, no control characters. */
export const ID_PATTERN = /^[^\s\p{C}][^\p{C}]*$/u;
export const ID_MESSAGE = 'must not start with a space nor contain control characters';

export class CreateWalletDto {
  @IsString()
  @Length(1, 128)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  user_id!: string;

  @IsOptional()
  @IsString()
  @Length(1, 64)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  plan?: string;

  @IsOptional()
  @IsMoney()
  initial_credits?: string | number;
}

export class UpdateWalletDto {
  @IsOptional()
  @IsString()
  @Length(1, 64)
  @Matches(ID_PATTERN, { message: ID_MESSAGE })
  plan?: string;

  @IsOptional()
  @IsIn(['active', 'suspended'])
  status?: WalletStatus;
}

export class TopUpDto {
  @IsMoney({ nonZero: true })
  amount!: string | number;

  @IsOptional()
  @IsString()
  @Length(1, 128)
  idempotency_key?: string;

  @IsOptional()
  @IsString()
  @Length(1, 500)
  description?: string;
}

export class AdjustDto {
  @IsMoney({ allowNegative: true, nonZero: true })
  amount!: string | number;

  @IsString()
  @Length(1, 500)
  reason!: string;
}

export class TransactionsQueryDto extends PageQueryDto {
  @IsOptional()
  @IsString()
  @Length(1, 64)
  usage_key?: string;
}
