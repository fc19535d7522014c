import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager, MoreThan } from 'typeorm';
import type { Actor } from '../audit/actor';
import { AuditService, changedFields } from '../audit/audit.service';
import { toScaled } from '../common/decimal';
import { Money } from '../common/money';
import { isUniqueViolation } from '../common/database-errors';
import { DEFAULT_PAGE_SIZE, Page, toPage } from '../common/pagination';
import { AiModel, ModelPriceVersion } from './ai-model.entity';
import { CreateModelPriceDto, PricingSettingsDto, UpdateModelPriceDto } from './dto/pricing.dto';
import type { ModelPriceResponseDoc, ModelPriceSummaryDoc, PricingSettingsResponseDoc } from './dto/pricing-responses.dto';
import type { UsageDto } from './dto/usage.dto';
import { PricingSettings, Quote } from './pricing-engine';
import { PricingCatalog } from './pricing-catalog';
import { PricingSettingsRow } from './pricing-settings.entity';
import { modelExists, modelNotFound } from './pricing.errors';
import { modelPriceSummaryView, modelPriceView, pricingSettingsView } from './pricing.views';

const optionalScaled = (v: string | number | null | undefined) => (v == null ? null : toScaled(v));

@Injectable()
export class PricingService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly catalog: PricingCatalog,
    private readonly audit: AuditService,
  ) {}

  /** Every write below commits with its audit row (API.md §12); a 404/409 writes neither. */
  async createModel(dto: CreateModelPriceDto, actor: Actor): Promise<ModelPriceResponseDoc> {
    const prices = {
      inputPricePerMillion: toScaled(dto.input_price_per_million),
      outputPricePerMillion: toScaled(dto.output_price_per_million),
      cachedInputPricePerMillion: optionalScaled(dto.cached_input_price_per_million),
      profitMargin: optionalScaled(dto.profit_margin),
    };
    try {
      await this.dataSource.transaction(async (manager) => {
        await manager.getRepository(AiModel).insert({ aiModel: dto.ai_model, version: 1, ...prices });
        await manager.getRepository(ModelPriceVersion).insert({ aiModel: dto.ai_model, version: 1, ...prices });
        const created = await manager.getRepository(AiModel).findOneByOrFail({ aiModel: dto.ai_model });
        await this.audit.append(manager, actor, 'model.create', dto.ai_model, { ...modelPriceSummaryView(created) });
      });
    } catch (error) {
      if (isUniqueViolation(error, 'ai_models_pkey')) throw modelExists(dto.ai_model);
      throw error;
    }
    this.catalog.invalidate();
    return this.getModel(dto.ai_model);
  }

  async listModels(cursor: string | undefined, limit = DEFAULT_PAGE_SIZE): Promise<Page<ModelPriceSummaryDoc>> {
    const rows = await this.dataSource.getRepository(AiModel).find({
      where: cursor ? { aiModel: MoreThan(cursor) } : {},
      order: { aiModel: 'ASC' },
      take: limit + 1,
    });
    return toPage(rows, limit, (m) => m.aiModel, modelPriceSummaryView);
  }

  /** The current price and every earlier one, newest first. */
  async getModel(aiModel: string): Promise<ModelPriceResponseDoc> {
    const model = await this.dataSource.getRepository(AiModel).findOneBy({ aiModel });
    if (!model) throw modelNotFound(aiModel);
    const history = await this.dataSource.getRepository(ModelPriceVersion).find({ where: { aiModel }, order: { version: 'DESC' } });
    return modelPriceView(model, history);
  }

  /** A price change is a new version; the old one stays in model_price_versions. */
  async updateModel(aiModel: string, dto: UpdateModelPriceDto, actor: Actor): Promise<ModelPriceResponseDoc> {
    await this.dataSource.transaction(async (manager) => {
      const repo = manager.getRepository(AiModel);
      const current = await repo.findOne({ where: { aiModel }, lock: { mode: 'pessimistic_write' } });
      if (!current) throw modelNotFound(aiModel);
      const next = {
        version: current.version + 1,
        inputPricePerMillion: dto.input_price_per_million == null ? current.inputPricePerMillion : toScaled(dto.input_price_per_million),
        outputPricePerMillion:
          dto.output_price_per_million == null ? current.outputPricePerMillion : toScaled(dto.output_price_per_million),
        cachedInputPricePerMillion:
          dto.cached_input_price_per_million === undefined
            ? current.cachedInputPricePerMillion
            : optionalScaled(dto.cached_input_price_per_million),
        profitMargin: dto.profit_margin === undefined ? current.profitMargin : optionalScaled(dto.profit_margin),
      };
      const unchanged =
        next.inputPricePerMillion === current.inputPricePerMillion &&
        next.outputPricePerMillion === current.outputPricePerMillion &&
        next.cachedInputPricePerMillion === current.cachedInputPricePerMillion &&
        next.profitMargin === current.profitMargin;
      if (unchanged) return; // no new version for a patch that changes nothing
      await repo.update({ aiModel }, next);
      await manager.getRepository(ModelPriceVersion).insert({ aiModel, ...next });
      const after = await repo.findOneByOrFail({ aiModel });
      await this.audit.append(
        manager,
        actor,
        'model.update',
        aiModel,
        changedFields(modelPriceSummaryView(current), modelPriceSummaryView(after)),
      );
    });
    this.catalog.invalidate();
    return this.getModel(aiModel);
  }

  async getSettings(): Promise<PricingSettingsResponseDoc> {
    return pricingSettingsView(await this.loadSettings(this.dataSource.manager));
  }

  async putSettings(dto: PricingSettingsDto, actor: Actor): Promise<PricingSettingsResponseDoc> {
    const patch: Partial<PricingSettingsRow> = {};
    if (dto.credits_per_usd != null) patch.creditsPerUsd = toScaled(dto.credits_per_usd);
    if (dto.default_profit_margin != null) patch.defaultProfitMargin = toScaled(dto.default_profit_margin);
    if (dto.default_low_balance_thresholds != null) {
      patch.defaultLowBalanceThresholds = dto.default_low_balance_thresholds
        .map((t) => Money.parse(t))
        .sort((a, b) => (a.micros === b.micros ? 0 : a.micros > b.micros ? -1 : 1))
        .map((t) => t.toString());
    }
    if (Object.keys(patch).length > 0) {
      await this.dataSource.transaction(async (manager) => {
        const repo = manager.getRepository(PricingSettingsRow);
        const before = await repo.findOneOrFail({ where: { id: 1 }, lock: { mode: 'pessimistic_write' } });
        await repo.update({ id: 1 }, patch);
        const after = await repo.findOneByOrFail({ id: 1 });
        const changes = changedFields(pricingSettingsView(before), pricingSettingsView(after));
        // A PUT that sets the values they already had changes nothing: no row.
        if (Object.keys(changes.after).length > 0) await this.audit.append(manager, actor, 'settings.update', 'settings', changes);
      });
    }
    this.catalog.invalidate();
    return this.getSettings();
  }

  /** What settling these usages on this feature would charge now; charges nothing. */
  quote(featureEndpointId: string, usages: UsageDto[]): Promise<Quote> {
    return this.catalog.quote(featureEndpointId, usages);
  }

  private async loadSettings(
    manager: EntityManager,
  ): Promise<PricingSettings & { defaultLowBalanceThresholds: string[]; updatedAt: Date }> {
    const row = await manager.getRepository(PricingSettingsRow).findOneByOrFail({ id: 1 });
    return {
      creditsPerUsd: row.creditsPerUsd,
      defaultProfitMargin: row.defaultProfitMargin,
      defaultLowBalanceThresholds: row.defaultLowBalanceThresholds.map((t) => Money.parse(t).toString()),
      updatedAt: row.updatedAt,
    };
  }
}
