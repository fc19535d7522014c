import { MigrationInterface, QueryRunner } from 'typeorm';

export class FeaturesAndPricing1764000000001 implements MigrationInterface {
  name = 'FeaturesAndPricing1764000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE features (
        feature_endpoint_id varchar(128)  PRIMARY KEY,
        name                varchar(200)  NOT NULL,
        min_holding_credits numeric(24,6) NOT NULL CHECK (min_holding_credits >= 0),
        hold_ttl_seconds    integer       CHECK (hold_ttl_seconds BETWEEN 1 AND 604800),
        profit_margin       numeric(12,6) CHECK (profit_margin >= 0),
        fixed_cost          numeric(24,6) CHECK (fixed_cost >= 0),
        allowed_plans       varchar(64)[] NOT NULL DEFAULT '{}',
        active              boolean       NOT NULL DEFAULT true,
        created_at          timestamptz   NOT NULL DEFAULT now(),
        updated_at          timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE ai_models (
        ai_model                       varchar(128)  PRIMARY KEY,
        version                        integer       NOT NULL,
        input_price_per_million        numeric(20,6) NOT NULL CHECK (input_price_per_million >= 0),
        output_price_per_million       numeric(20,6) NOT NULL CHECK (output_price_per_million >= 0),
        cached_input_price_per_million numeric(20,6) CHECK (cached_input_price_per_million >= 0),
        profit_margin                  numeric(12,6) CHECK (profit_margin >= 0),
        created_at                     timestamptz   NOT NULL DEFAULT now(),
        updated_at                     timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE model_price_versions (
        id                             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ai_model                       varchar(128)  NOT NULL REFERENCES ai_models (ai_model),
        version                        integer       NOT NULL,
        input_price_per_million        numeric(20,6) NOT NULL,
        output_price_per_million       numeric(20,6) NOT NULL,
        cached_input_price_per_million numeric(20,6),
        profit_margin                  numeric(12,6),
        valid_from                     timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX model_price_versions_model_version ON model_price_versions (ai_model, version)`);
    await q.query(`
      CREATE TABLE pricing_settings (
        id                    smallint      PRIMARY KEY CHECK (id = 1),
        credits_per_usd       numeric(20,6) NOT NULL CHECK (credits_per_usd > 0),
        default_profit_margin numeric(12,6) NOT NULL CHECK (default_profit_margin >= 0),
        updated_at            timestamptz   NOT NULL DEFAULT now()
      )`);
    await q.query(`INSERT INTO pricing_settings (id, credits_per_usd, default_profit_margin) VALUES (1, 100, 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE pricing_settings`);
    await q.query(`DROP TABLE model_price_versions`);
    await q.query(`DROP TABLE ai_models`);
    await q.query(`DROP TABLE features`);
  }
}
