import { Controller } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { QueueMessageContext } from '../queue/queue-message.context';
import { END_MULTIMODEL_QUEUE, END_QUEUE } from '../queue/queue.constants';
import { QueueSettlementService } from './queue-settlement.service';

/**
 * RabbitMQ adapter of the credits process. Resolving acks the message (after the settlement
 * committed); throwing hands it back to the transport for retry and dead-lettering.
 */
@Controller()
export class CreditsProcessConsumer {
  constructor(private readonly queueSettlement: QueueSettlementService) {}

  @EventPattern<string>(END_MULTIMODEL_QUEUE)
  endMultiModel(@Payload() payload: unknown, @Ctx() ctx: QueueMessageContext): Promise<void> {
    return this.queueSettlement.handle(payload, ctx.info);
  }

  @EventPattern<string>(END_QUEUE)
  end(@Payload() payload: unknown, @Ctx() ctx: QueueMessageContext): Promise<void> {
    return this.queueSettlement.handle(payload, ctx.info);
  }
}
