import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, MoreThan } from 'typeorm';
import { toScaled } from '../common/decimal';
import { isUniqueViolation } from '../common/database-errors';
import { Money } from '../common/money';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { APP_CONFIG } from '../config/config.module';
import type { AppConfig } from '../config/configuration';
import { PricingCatalog } from '../pricing/pricing-catalog';
import { CreateFeatureDto, UpdateFeatureDto } from './dto/feature.dto';
import type { FeatureResponseDoc } from './dto/feature-responses.dto';
import { Feature } from './feature.entity';
import { featureExists, featureNotFound } from './features.errors';
import { featureView } from './features.views';

@Injectable()
export class FeaturesService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly catalog: PricingCatalog,
  ) {}

  private view(f: Feature): FeatureResponseDoc {
    return featureView(f, this.config.holdTtlSeconds);
  }

  async create(dto: CreateFeatureDto): Promise<FeatureResponseDoc> {
    const repo = this.dataSource.getRepository(Feature);
    try {
      await repo.insert({
        featureEndpointId: dto.feature_endpoint_id,
        name: dto.name,
        minHoldingCredits: Money.parse(dto.min_holding_credits),
        holdTtlSeconds: dto.hold_ttl_seconds ?? null,
        profitMargin: dto.profit_margin == null ? null : toScaled(dto.profit_margin),
        fixedCost: dto.fixed_cost == null ? null : Money.parse(dto.fixed_cost),
        allowedPlans: dto.allowed_plans ?? [],
        active: dto.active ?? true,
        priceLock: dto.price_lock ?? false,
      });
    } catch (error) {
      if (isUniqueViolation(error, 'features_pkey')) throw featureExists(dto.feature_endpoint_id);
      throw error;
    }
    this.catalog.invalidate();
    return this.view(await this.find(dto.feature_endpoint_id));
  }

  async list(cursor: string | undefined, limit = DEFAULT_PAGE_SIZE): Promise<Page<FeatureResponseDoc>> {
    const rows = await this.dataSource.getRepository(Feature).find({
      where: cursor ? { featureEndpointId: MoreThan(cursor) } : {},
      order: { featureEndpointId: 'ASC' },
      take: limit + 1,
    });
    return toPage(
      rows,
      limit,
      (f) => f.featureEndpointId,
      (f) => this.view(f),
    );
  }

  async get(id: string): Promise<FeatureResponseDoc> {
    return this.view(await this.find(id));
  }

  async find(id: string): Promise<Feature> {
    const feature = await this.dataSource.getRepository(Feature).findOneBy({ featureEndpointId: id });
    if (!feature) throw featureNotFound(id);
    return feature;
  }

  async update(id: string, dto: UpdateFeatureDto): Promise<FeatureResponseDoc> {
    const feature = await this.find(id);
    const patch: Partial<Feature> = {};
    if (dto.name != null) patch.name = dto.name;
    if (dto.min_holding_credits != null) patch.minHoldingCredits = Money.parse(dto.min_holding_credits);
    if (dto.hold_ttl_seconds !== undefined) patch.holdTtlSeconds = dto.hold_ttl_seconds;
    if (dto.profit_margin !== undefined) patch.profitMargin = dto.profit_margin === null ? null : toScaled(dto.profit_margin);
    if (dto.fixed_cost !== undefined) patch.fixedCost = dto.fixed_cost === null ? null : Money.parse(dto.fixed_cost);
    if (dto.allowed_plans != null) patch.allowedPlans = dto.allowed_plans;
    if (dto.active != null) patch.active = dto.active;
    if (dto.price_lock != null) patch.priceLock = dto.price_lock;
    if (Object.keys(patch).length > 0) {
      await this.dataSource.getRepository(Feature).update({ featureEndpointId: feature.featureEndpointId }, patch);
      this.catalog.invalidate();
    }
    return this.view(await this.find(id));
  }
}
