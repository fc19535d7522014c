import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess } from '../common/openapi';
import { ReconciliationResponseDoc } from './dto/wallet-responses.dto';
import { ReconciliationService } from './reconciliation.service';

@ApiTags('reconciliation')
@Controller('api/reconciliation')
export class ReconciliationController {
  constructor(private readonly reconciliation: ReconciliationService) {}

  @Get()
  @ApiOperation({
    summary: 'Check the books',
    description: 'Admin scope. Every wallet: balance = Σ ledger (and the last balance_after), held = Σ live holds.',
  })
  @ApiSuccess({
    description: 'The check; `mismatches` is empty when the books are right.',
    type: ReconciliationResponseDoc,
    example: { wallets_checked: 1200, mismatches: [] },
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS)
  run() {
    return this.reconciliation.run();
  }
}
