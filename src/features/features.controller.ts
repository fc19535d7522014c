import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import { type Actor, CurrentActor } from '../audit/actor';
import { ADMIN_ROUTE_ERRORS, ApiErrors, ApiSuccess, BODY_ERRORS } from '../common/openapi';
import { PageQueryDto } from '../common/pagination';
import { CreateFeatureDto, UpdateFeatureDto } from './dto/feature.dto';
import { FEATURE_EXAMPLE, FeatureResponseDoc } from './dto/feature-responses.dto';
import { FeaturesService } from './features.service';

const FEATURE_ID = ApiParam({ name: 'feature_endpoint_id', description: "The feature's id.", example: 'ai_chat_v1' });

@ApiTags('features')
@Controller('api/features')
export class FeaturesController {
  constructor(private readonly features: FeaturesService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Add a feature to the catalogue', description: 'Admin scope.' })
  @ApiSuccess({ status: 201, description: 'Created.', type: FeatureResponseDoc, example: FEATURE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'already_exists')
  create(@Body() dto: CreateFeatureDto, @CurrentActor() actor: Actor) {
    return this.features.create(dto, actor);
  }

  @Get()
  @ApiOperation({ summary: 'List features', description: 'Admin scope. Ordered by feature_endpoint_id; page with cursor/limit.' })
  @ApiSuccess({ description: 'A page of features.', type: FeatureResponseDoc, page: true, example: FEATURE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'validation_error')
  list(@Query() query: PageQueryDto) {
    return this.features.list(query.cursor, query.limit);
  }

  @Get(':feature_endpoint_id')
  @ApiOperation({ summary: 'Read a feature', description: 'Admin scope.' })
  @FEATURE_ID
  @ApiSuccess({ description: 'The feature.', type: FeatureResponseDoc, example: FEATURE_EXAMPLE })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, 'feature_not_found')
  get(@Param('feature_endpoint_id') id: string) {
    return this.features.get(id);
  }

  @Patch(':feature_endpoint_id')
  @ApiOperation({
    summary: 'Change a feature',
    description: 'Admin scope. Only the fields sent change; null removes an optional override.',
  })
  @FEATURE_ID
  @ApiSuccess({ description: 'The feature after the change.', type: FeatureResponseDoc, example: { ...FEATURE_EXAMPLE, active: false } })
  @ApiErrors(...ADMIN_ROUTE_ERRORS, ...BODY_ERRORS, 'feature_not_found')
  update(@Param('feature_endpoint_id') id: string, @Body() dto: UpdateFeatureDto, @CurrentActor() actor: Actor) {
    return this.features.update(id, dto, actor);
  }
}
