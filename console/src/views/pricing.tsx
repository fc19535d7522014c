import { api, type Feature, type ModelPrice, type Page, type PricingSettings } from '../api';
import { Empty, ErrorNote, Money, Time, useLoad } from '../ui';

/** Margins are fractions ("0.2" = 20 %): shown as a percentage by moving the decimal point in the text. */
function percent(fraction: string): string {
  const [whole, part = ''] = fraction.split('.');
  const digits = `${whole}${part.padEnd(2, '0')}`;
  const int = digits.slice(0, whole.length + 2).replace(/^0+(?=\d)/, '');
  const rest = digits.slice(whole.length + 2).replace(/0+$/, '');
  return `${int}${rest ? `.${rest}` : ''} %`;
}

/** The price table (current versions), the pricing settings and the feature catalogue. */
export function PricingView() {
  const settings = useLoad(() => api<PricingSettings>('GET', '/api/pricing/settings'), []);
  const models = useLoad(() => api<Page<ModelPrice>>('GET', '/api/pricing/models?limit=200'), []);
  const features = useLoad(() => api<Page<Feature>>('GET', '/api/features?limit=200'), []);
  return (
    <section>
      <h1>Prices & features</h1>
      <ErrorNote error={settings.error} />
      {settings.data && (
        <dl class="figures">
          <div>
            <dt>credits per USD</dt>
            <dd>
              <Money value={settings.data.credits_per_usd} />
            </dd>
          </div>
          <div>
            <dt>default margin</dt>
            <dd>{percent(settings.data.default_profit_margin)}</dd>
          </div>
          <div>
            <dt>settings changed</dt>
            <dd>
              <Time iso={settings.data.updated_at} />
            </dd>
          </div>
        </dl>
      )}
      <h2>Models (USD per million tokens)</h2>
      <ErrorNote error={models.error} />
      {models.data && models.data.items.length === 0 && <Empty>No model has a price yet: add one with POST /api/pricing/models.</Empty>}
      {models.data && models.data.items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>model</th>
              <th>version</th>
              <th class="num">input</th>
              <th class="num">output</th>
              <th class="num">cached input</th>
              <th class="num">margin</th>
            </tr>
          </thead>
          <tbody>
            {models.data.items.map((m) => (
              <tr key={m.ai_model}>
                <td>{m.ai_model}</td>
                <td>v{m.version}</td>
                <td class="num">
                  <Money value={m.input_price_per_million} />
                </td>
                <td class="num">
                  <Money value={m.output_price_per_million} />
                </td>
                <td class="num">
                  {m.cached_input_price_per_million === null ? (
                    <span class="muted">= input</span>
                  ) : (
                    <Money value={m.cached_input_price_per_million} />
                  )}
                </td>
                <td class="num">{m.profit_margin === null ? <span class="muted">default</span> : percent(m.profit_margin)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Features</h2>
      <ErrorNote error={features.error} />
      {features.data && features.data.items.length === 0 && <Empty>No features yet: add one with POST /api/features.</Empty>}
      {features.data && features.data.items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>feature</th>
              <th>name</th>
              <th class="num">hold</th>
              <th>hold lifetime</th>
              <th class="num">margin</th>
              <th class="num">fixed cost</th>
              <th>plans</th>
              <th>active</th>
            </tr>
          </thead>
          <tbody>
            {features.data.items.map((f) => (
              <tr key={f.feature_endpoint_id}>
                <td>
                  <code>{f.feature_endpoint_id}</code>
                </td>
                <td>{f.name}</td>
                <td class="num">
                  <Money value={f.min_holding_credits} />
                </td>
                <td>{f.hold_ttl_seconds} s</td>
                <td class="num">{f.profit_margin === null ? <span class="muted">default</span> : percent(f.profit_margin)}</td>
                <td class="num">{f.fixed_cost === null ? <span class="muted">—</span> : <Money value={f.fixed_cost} />}</td>
                <td>{f.allowed_plans.length === 0 ? <span class="muted">all</span> : f.allowed_plans.join(', ')}</td>
                <td>{f.active ? 'yes' : <span class="badge suspended">inactive</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
