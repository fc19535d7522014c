import { Body, Controller, Get, Headers, HttpCode, Param, Post } from '@nestjs/common';
import { ServiceScope } from '../common/api-key.guard';
import { validationError } from '../common/domain-error';
import { CancelDto, EndMultiModelDto, EndSingleModelDto, StartProcessDto, toMultiModel } from './dto/credits-process.dto';
import { CreditsProcessService } from './credits-process.service';

/** HTTP adapter of the credits process: maps DTOs, calls the service, nothing else. */
@ServiceScope()
@Controller('api/credits-process')
export class CreditsProcessController {
  constructor(private readonly creditsProcess: CreditsProcessService) {}

  @Post('start')
  @HttpCode(200)
  start(@Body() dto: StartProcessDto) {
    return this.creditsProcess.start(dto.user_id, dto.feature_endpoint_id);
  }

  @Post('end-multimodel')
  @HttpCode(200)
  endMultiModel(@Body() dto: EndMultiModelDto, @Headers('idempotency-key') idempotencyKey?: string) {
    return this.creditsProcess.settle(withHeaderKey(dto, idempotencyKey), 'http');
  }

  @Post('end')
  @HttpCode(200)
  end(@Body() dto: EndSingleModelDto, @Headers('idempotency-key') idempotencyKey?: string) {
    return this.creditsProcess.settle(withHeaderKey(toMultiModel(dto), idempotencyKey), 'http');
  }

  @Post('cancel')
  @HttpCode(200)
  cancel(@Body() dto: CancelDto) {
    return this.creditsProcess.cancel(dto.usage_key);
  }

  @Get('usages/:usage_key')
  usage(@Param('usage_key') usageKey: string) {
    return this.creditsProcess.usage(usageKey);
  }
}

/** Same limit as the body's idempotency_key: a longer key is refused, never cut (two keys would collide). */
const MAX_IDEMPOTENCY_KEY = 128;

function withHeaderKey(dto: EndMultiModelDto, header: string | undefined): EndMultiModelDto {
  if (dto.idempotency_key !== undefined || !header) return dto;
  if (header.length > MAX_IDEMPOTENCY_KEY) {
    throw validationError([{ field: 'Idempotency-Key', message: `must be at most ${MAX_IDEMPOTENCY_KEY} characters` }]);
  }
  return { ...dto, idempotency_key: header };
}
