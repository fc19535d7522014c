import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, MoreThan } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService, changedFields } from '../audit/audit.service';
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
    private readonly audit: AuditService,
  ) {}

  private view(f: Feature): FeatureResponseDoc {
    return featureView(f, this.config.holdTtlSeconds);
  }

  /** The feature and its audit row (API.md §12) commit together; a 409 writes neither. */
  async create(dto: CreateFeatureDto, actor: Actor): Promise<FeatureResponseDoc> {
    let created: FeatureResponseDoc;
    try {
      created = await this.dataSource.transaction(async (manager) => {
        const repo = manager.getRepository(Feature);
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
        const view = this.view(await repo.findOneByOrFail({ featureEndpointId: dto.feature_endpoint_id }));
        await this.audit.append(manager, actor, 'feature.create', dto.feature_endpoint_id, { ...view });
        return view;
      });
    } catch (error) {
      if (isUniqueViolation(error, 'features_pkey')) throw featureExists(dto.feature_endpoint_id);
      throw error;
    }
    this.catalog.invalidate();
    return created;
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

  /** The change and its audit row (before/after of the fields that changed) commit together; a 404 writes neither. */
  async update(id: string, dto: UpdateFeatureDto, actor: Actor): Promise<FeatureResponseDoc> {
    const patch: Partial<Feature> = {};
    if (dto.name != null) patch.name = dto.name;
    if (dto.min_holding_credits != null) patch.minHoldingCredits = Money.parse(dto.min_holding_credits);
    if (dto.hold_ttl_seconds !== undefined) patch.holdTtlSeconds = dto.hold_ttl_seconds;
    if (dto.profit_margin !== undefined) patch.profitMargin = dto.profit_margin === null ? null : toScaled(dto.profit_margin);
    if (dto.fixed_cost !== undefined) patch.fixedCost = dto.fixed_cost === null ? null : Money.parse(dto.fixed_cost);
    if (dto.allowed_plans != null) patch.allowedPlans = dto.allowed_plans;
    if (dto.active != null) patch.active = dto.active;
    if (dto.price_lock != null) patch.priceLock = dto.price_lock;
    const updated = await this.dataSource.transaction(async (manager) => {
      const repo = manager.getRepository(Feature);
      const feature = await repo.findOne({ where: { featureEndpointId: id }, lock: { mode: 'pessimistic_write' } });
      if (!feature) throw featureNotFound(id);
      if (Object.keys(patch).length === 0) return this.view(feature);
      await repo.update({ featureEndpointId: feature.featureEndpointId }, patch);
      const before = this.view(feature);
      const after = this.view(await repo.findOneByOrFail({ featureEndpointId: feature.featureEndpointId }));
      const changes = changedFields(before, after);
      if (Object.keys(changes.after).length > 0) await this.audit.append(manager, actor, 'feature.update', id, changes);
      return after;
    });
    this.catalog.invalidate();
    return updated;
  }
}
