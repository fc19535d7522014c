import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** One admin write (API.md §12). The table refuses UPDATE, DELETE and TRUNCATE (a trigger). */
@Entity('audit_log')
export class AuditEntry {
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ type: 'timestamptz', default: () => 'now()' })
  at!: Date;

  @Column({ name: 'actor_key_id', type: 'uuid', nullable: true })
  actorKeyId!: string | null;

  @Column({ name: 'actor_name', type: 'varchar', length: 128 })
  actorName!: string;

  @Column({ type: 'varchar', length: 64 })
  action!: AuditAction;

  @Column({ type: 'varchar', length: 256 })
  target!: string;

  @Column({ name: 'request_id', type: 'varchar', length: 128, nullable: true })
  requestId!: string | null;

  @Column({ type: 'jsonb' })
  changes!: Record<string, unknown>;
}

/** Every action the log knows (API.md §12); v2 capabilities not built yet keep their words here. */
export const AUDIT_ACTIONS = [
  'wallet.create',
  'wallet.update',
  'wallet.top_up',
  'wallet.adjust',
  'grant.create',
  'grant.void',
  'feature.create',
  'feature.update',
  'model.create',
  'model.update',
  'settings.update',
  'key.create',
  'key.update',
  'key.revoke',
  'key.rotate',
  'webhook.create',
  'webhook.update',
  'webhook.delete',
  'settlement_failure.replay',
  'settlement_failure.discard',
  'usage.refund',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
