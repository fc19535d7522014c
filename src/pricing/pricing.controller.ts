import { Body, Controller, Get, HttpCode, Param, Patch, Post, Put, Query } from '@nestjs/common';
import { ServiceScope } from '../common/api-key.guard';
import { PageQueryDto } from '../common/pagination';
import { CreateModelPriceDto, PricingSettingsDto, UpdateModelPriceDto } from './dto/pricing.dto';
import { QuoteDto } from './dto/usage.dto';
import { PricingService, quoteView } from './pricing.service';

@Controller('api/pricing')
export class PricingController {
  constructor(private readonly pricing: PricingService) {}

  @Post('models')
  @HttpCode(201)
  createModel(@Body() dto: CreateModelPriceDto) {
    return this.pricing.createModel(dto);
  }

  @Get('models')
  listModels(@Query() query: PageQueryDto) {
    return this.pricing.listModels(query.cursor, query.limit);
  }

  @Get('models/:ai_model')
  getModel(@Param('ai_model') aiModel: string) {
    return this.pricing.getModel(aiModel);
  }

  @Patch('models/:ai_model')
  updateModel(@Param('ai_model') aiModel: string, @Body() dto: UpdateModelPriceDto) {
    return this.pricing.updateModel(aiModel, dto);
  }

  @Get('settings')
  getSettings() {
    return this.pricing.getSettings();
  }

  @Put('settings')
  putSettings(@Body() dto: PricingSettingsDto) {
    return this.pricing.putSettings(dto);
  }

  @Post('quote')
  @HttpCode(200)
  @ServiceScope()
  async quote(@Body() dto: QuoteDto) {
    return quoteView(dto.feature_endpoint_id, await this.pricing.quote(dto.feature_endpoint_id, dto.usages));
  }
}
