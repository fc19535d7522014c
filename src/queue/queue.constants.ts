/** The settlement queues of API.md §7. Each queue is also its handler's @EventPattern. */
export const END_MULTIMODEL_QUEUE = 'credits_process_end_multimodel_queue';
export const END_QUEUE = 'credits_process_end_queue';
export const DEAD_LETTER_QUEUE = 'credits_process_dead_letter_queue';
export const SETTLEMENT_QUEUES = [END_MULTIMODEL_QUEUE, END_QUEUE] as const;
export type SettlementQueue = (typeof SETTLEMENT_QUEUES)[number];
