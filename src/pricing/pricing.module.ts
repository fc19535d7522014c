import { Module } from '@nestjs/common';
import { PricingCatalog } from './pricing-catalog';
import { PricingController } from './pricing.controller';
import { PricingService } from './pricing.service';

@Module({
  controllers: [PricingController],
  providers: [PricingService, PricingCatalog],
  exports: [PricingService, PricingCatalog],
})
export class PricingModule {}
