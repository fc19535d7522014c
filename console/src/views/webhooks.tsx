import { useState } from 'preact/hooks';
import {
  api,
  ApiError,
  enc,
  EVENT_TYPES,
  isMissingRoute,
  type Page,
  type Webhook,
  type WebhookDelivery,
  type WebhookWithSecret,
} from '../api';
import { asApiError, Empty, ErrorNote, Loading, LoadError, type Outcome, OutcomeNote, SecretOnce, Time, Unavailable, useLoad } from '../ui';

/** `GET /api/webhooks` is a cursor list; an operator has a handful, so the first 200 are all of them. */
async function listWebhooks(): Promise<Webhook[]> {
  return (await api<Page<Webhook>>('GET', '/api/webhooks?limit=200')).items;
}

/** Webhooks (API.md §10): create (its secret shown once), switch on and off, delete; deliveries per webhook. */
export function WebhooksView() {
  const hooks = useLoad(listWebhooks, []);
  const [secret, setSecret] = useState<WebhookWithSecret>();
  const [outcome, setOutcome] = useState<Outcome>();
  const missing = isMissingRoute(hooks.error);

  const toggle = async (hook: Webhook) => {
    try {
      await api<Webhook>('PATCH', `/api/webhooks/${enc(hook.webhook_id)}`, { active: !hook.active });
      setOutcome({ ok: true, text: `Webhook ${hook.url} ${hook.active ? 'paused: nothing is sent to it' : 'active again'}.` });
    } catch (error) {
      setOutcome({ ok: false, text: `Webhook ${hook.url} could not be changed:`, error: asApiError(error) });
    }
    hooks.reload();
  };
  const remove = async (hook: Webhook) => {
    if (!confirm(`Delete the webhook ${hook.url}? Its pending deliveries are dropped.`)) return;
    try {
      await api('DELETE', `/api/webhooks/${enc(hook.webhook_id)}`);
      setOutcome({ ok: true, text: `Webhook ${hook.url} deleted.` });
    } catch (error) {
      setOutcome({ ok: false, text: `Webhook ${hook.url} could not be deleted:`, error: asApiError(error) });
    }
    hooks.reload();
  };

  return (
    <section>
      <h1>Webhooks</h1>
      {missing ? (
        <Unavailable what="Webhooks" />
      ) : (
        <>
          <p class="muted">
            Each event is POSTed as JSON, signed in <code>x-credits-signature</code> with the webhook's secret; see{' '}
            <a href="/console/events">events</a> for what was sent.
          </p>
          {secret && <SecretOnce label={`Signing secret of ${secret.url}.`} secret={secret.secret} onDone={() => setSecret(undefined)} />}
          <OutcomeNote outcome={outcome} />
          <CreateWebhook
            onCreated={(hook) => {
              setOutcome(undefined);
              setSecret(hook);
              hooks.reload();
            }}
          />
          <h2>Registered webhooks</h2>
          <ErrorNote error={hooks.error} />
          <Loading when={hooks.loading && !hooks.data} />
          {hooks.data && hooks.data.length === 0 && (
            <Empty>No webhooks yet: add the URL of a system that should hear about low balances, expiries and refunds.</Empty>
          )}
          {hooks.data && hooks.data.length > 0 && (
            <table data-table="webhooks">
              <thead>
                <tr>
                  <th>url</th>
                  <th>events</th>
                  <th>description</th>
                  <th>status</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {hooks.data.map((h) => (
                  <tr key={h.webhook_id} data-webhook={h.webhook_id}>
                    <td>
                      <a href={`/console/webhooks/${enc(h.webhook_id)}`}>{h.url}</a>
                      <small class="muted block">
                        added <Time iso={h.created_at} />
                      </small>
                    </td>
                    <td>{h.events.includes('*') ? <span class="muted">every event</span> : h.events.join(', ')}</td>
                    <td>{h.description ?? <span class="muted">—</span>}</td>
                    <td data-webhook-status>
                      <span class={`badge ${h.active ? 'active' : 'suspended'}`}>{h.active ? 'active' : 'paused'}</span>
                    </td>
                    <td class="actions">
                      <a href={`/console/webhooks/${enc(h.webhook_id)}`}>Deliveries</a>
                      <button type="button" class="secondary" onClick={() => void toggle(h)}>
                        {h.active ? 'Pause' : 'Activate'}
                      </button>
                      <button type="button" class="danger" onClick={() => void remove(h)}>
                        Delete
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

function CreateWebhook({ onCreated }: { onCreated: (hook: WebhookWithSecret) => void }) {
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  return (
    <details class="panel" open>
      <summary>Add a webhook</summary>
      <form
        class="form-grid"
        data-form="create-webhook"
        onSubmit={(event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const data = new FormData(form);
          const picked = data.getAll('event').map(String);
          const description = String(data.get('description') ?? '').trim();
          const body = {
            url: String(data.get('url') ?? '').trim(),
            events: picked.length === 0 ? ['*'] : picked,
            ...(description ? { description } : {}),
          };
          setBusy(true);
          setError(undefined);
          api<WebhookWithSecret>('POST', '/api/webhooks', body).then(
            (hook) => {
              setBusy(false);
              form.reset();
              onCreated(hook);
            },
            (e: unknown) => {
              setBusy(false);
              setError(asApiError(e));
            },
          );
        }}
      >
        <label>
          URL
          <input name="url" type="url" required placeholder="https://billing.example.com/hooks/credits" />
        </label>
        <label>
          Description (optional)
          <input name="description" maxLength={256} placeholder="billing alerts" />
        </label>
        <fieldset>
          <legend>Events (none ticked = every event)</legend>
          {EVENT_TYPES.map((t) => (
            <label class="check" key={t}>
              <input type="checkbox" name="event" value={t} /> <code>{t}</code>
            </label>
          ))}
        </fieldset>
        <p>
          <button type="submit" disabled={busy}>
            Add webhook
          </button>
        </p>
        <ErrorNote error={error} />
      </form>
    </details>
  );
}

/** One webhook's delivery attempts, newest first, a page at a time. */
export function WebhookView({ webhookId }: { webhookId: string }) {
  const id = decodeURIComponent(webhookId);
  const hooks = useLoad(listWebhooks, []);
  const hook = hooks.data?.find((h) => h.webhook_id === id);
  const [cursors, setCursors] = useState<string[]>([]);
  const deliveries = useLoad(async () => {
    const items: WebhookDelivery[] = [];
    let next: string | null = null;
    for (const cursor of ['', ...cursors]) {
      if (cursor && cursor !== next) break;
      const page: Page<WebhookDelivery> = await api<Page<WebhookDelivery>>(
        'GET',
        `/api/webhooks/${enc(id)}/deliveries?limit=100${cursor ? `&cursor=${enc(cursor)}` : ''}`,
      );
      items.push(...page.items);
      next = page.next_cursor;
    }
    return { items, next };
  }, [id, cursors.join(',')]);
  return (
    <section>
      <p class="crumbs">
        <a href="/console/webhooks">Webhooks</a> / {hook?.url ?? id}
      </p>
      <h1>Deliveries</h1>
      {hook && (
        <p>
          <code>{hook.url}</code> · {hook.events.includes('*') ? 'every event' : hook.events.join(', ')} ·{' '}
          <span class={`badge ${hook.active ? 'active' : 'suspended'}`}>{hook.active ? 'active' : 'paused'}</span>
        </p>
      )}
      <LoadError error={deliveries.error} what="Webhook deliveries" />
      <Loading when={deliveries.loading && !deliveries.data} />
      {deliveries.data && deliveries.data.items.length === 0 && (
        <Empty>Nothing delivered to this webhook yet: deliveries appear when an event it subscribes to happens.</Empty>
      )}
      {deliveries.data && deliveries.data.items.length > 0 && (
        <table data-table="deliveries">
          <thead>
            <tr>
              <th>when</th>
              <th>event</th>
              <th>attempt</th>
              <th>outcome</th>
              <th class="num">status code</th>
              <th class="num">duration</th>
              <th>error</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.data.items.map((d) => (
              <tr key={d.id} data-delivery={d.event_id}>
                <td>
                  <Time iso={d.at} />
                </td>
                <td>
                  <code>{d.event_id}</code>
                </td>
                <td>{d.attempt}</td>
                <td>
                  <span class={`badge ${d.outcome}`}>{d.outcome}</span>
                </td>
                <td class="num">{d.status_code ?? <span class="muted">no answer</span>}</td>
                <td class="num">{d.duration_ms.toLocaleString('en')} ms</td>
                <td>{d.error ?? <span class="muted">—</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {deliveries.data?.next && !deliveries.loading && (
        <p class="pager">
          <button type="button" class="secondary" onClick={() => setCursors([...cursors, deliveries.data!.next!])}>
            Load older deliveries
          </button>
        </p>
      )}
    </section>
  );
}
