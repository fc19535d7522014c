import { type Actor, CurrentActor } from '../audit/actor';
import { Body, Controller, Get, HttpCode, Param, Patch, Post, Put, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { ServiceScope } from '../common/api-key.guard';
import { ADMIN_ROUTE_ERRORS, API_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import { CreateModelPriceDto, PricingSettingsDto, UpdateModelPriceDto } from './dto/pricing.dto';
import {
  MODEL_PRICE_EXAMPLE,
  MODEL_PRICE_SUMMARY_EXAMPLE,
  ModelPriceResponseDoc,
  ModelPriceSummaryDoc,
  PRICING_SETTINGS_EXAMPLE,
  PricingSettingsResponseDoc,
  QUOTE_EXAMPLE,
  QuoteResponseDoc,
} from './dto/pricing-responses.dto';
import { QuoteDto } from './dto/usage.dto';
import { PricingService } from './pricing.service';
import { quoteView } from './pricing.views';

const AI_MODEL = ApiParam({ name: 'ai_model', description: 'The model name.', example: 'gpt-4o' });

@ApiTags('pricing')
@Controller('api/pricing')
export class PricingController {
  constructor(private readonly pricing: PricingService) {}

  @Post('models')
  @HttpCode(201)
  @ApiOperation({ summary: "Set a model's price", description: 'Admin scope. Prices in USD per million tokens.' })
  @ApiSuccess({ status: 201, description: 'Created (version 1).', type: ModelPriceResponseDoc, example: MODEL_PRICE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'already_exists')
  createModel(@Body() dto: CreateModelPriceDto, @CurrentActor() actor: Actor) {
    return this.pricing.createModel(dto, actor);
  }

  @Get('models')
  @ApiOperation({ summary: 'List the price table', description: 'Admin scope. Ordered by ai_model; page with cursor/limit.' })
  @ApiSuccess({
    description: 'A page of model prices (without their history).',
    type: ModelPriceSummaryDoc,
    page: true,
    example: MODEL_PRICE_SUMMARY_EXAMPLE,
  })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  listModels(@Query() query: PageQueryDto) {
    return this.pricing.listModels(query.cursor, query.limit);
  }

  @Get('models/:ai_model')
  @ApiOperation({ summary: "Read a model's price and its history", description: 'Admin scope.' })
  @AI_MODEL
  @ApiSuccess({ description: 'The current price and every earlier one.', type: ModelPriceResponseDoc, example: MODEL_PRICE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'model_not_found')
  getModel(@Param('ai_model') aiModel: string) {
    return this.pricing.getModel(aiModel);
  }

  @Patch('models/:ai_model')
  @ApiOperation({
    summary: "Change a model's price",
    description: 'Admin scope. A new version; the old one stays so old charges stay explainable.',
  })
  @AI_MODEL
  @ApiSuccess({ description: 'The new price and its history.', type: ModelPriceResponseDoc, example: MODEL_PRICE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'model_not_found')
  updateModel(@Param('ai_model') aiModel: string, @Body() dto: UpdateModelPriceDto, @CurrentActor() actor: Actor) {
    return this.pricing.updateModel(aiModel, dto, actor);
  }

  @Get('settings')
  @ApiOperation({ summary: 'Read the conversion rate and default margin', description: 'Admin scope.' })
  @ApiSuccess({ description: 'The settings.', type: PricingSettingsResponseDoc, example: PRICING_SETTINGS_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS)
  getSettings() {
    return this.pricing.getSettings();
  }

  @Put('settings')
  @ApiOperation({ summary: 'Change the conversion rate or default margin', description: 'Admin scope. Fields left out keep their value.' })
  @ApiSuccess({ description: 'The settings after the change.', type: PricingSettingsResponseDoc, example: PRICING_SETTINGS_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS)
  putSettings(@Body() dto: PricingSettingsDto, @CurrentActor() actor: Actor) {
    return this.pricing.putSettings(dto, actor);
  }

  @Post('quote')
  @HttpCode(200)
  @ServiceScope()
  @ApiOperation({
    summary: 'Price usages without charging',
    description: 'Service scope. What a settlement of these usages on this feature would charge now.',
  })
  @ApiSuccess({ description: 'The quote.', type: QuoteResponseDoc, example: QUOTE_EXAMPLE })
  @ApiErrors(...API_ROUTE_ERRORS, ...BODY_ERRORS, 'feature_not_found', 'unknown_model')
  async quote(@Body() dto: QuoteDto) {
    return quoteView(dto.feature_endpoint_id, await this.pricing.quote(dto.feature_endpoint_id, dto.usages));
  }
}
