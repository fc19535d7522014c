import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { PageQueryDto } from '../common/pagination';
import { CreateFeatureDto, UpdateFeatureDto } from './dto/feature.dto';
import { FeaturesService } from './features.service';

@Controller('api/features')
export class FeaturesController {
  constructor(private readonly features: FeaturesService) {}

  @Post()
  @HttpCode(201)
  create(@Body() dto: CreateFeatureDto) {
    return this.features.create(dto);
  }

  @Get()
  list(@Query() query: PageQueryDto) {
    return this.features.list(query.cursor, query.limit);
  }

  @Get(':feature_endpoint_id')
  async get(@Param('feature_endpoint_id') id: string) {
    return this.features.view(await this.features.find(id));
  }

  @Patch(':feature_endpoint_id')
  update(@Param('feature_endpoint_id') id: string, @Body() dto: UpdateFeatureDto) {
    return this.features.update(id, dto);
  }
}
