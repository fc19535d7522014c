import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, type CreditEvent, enc, EVENT_TYPES, type Page } from '../api';
import { asApiError, Empty, Fields, Loading, LoadError, type Outcome, OutcomeNote, Time, useLoad } from '../ui';

function address(type: string, userId: string, after?: string): string {
  const params = new URLSearchParams();
  if (type) params.set('type', type);
  if (userId) params.set('user_id', userId);
  if (after) params.set('after', after);
  const query = params.toString();
  return `/console/events${query ? `?${query}` : ''}`;
}

/** An event's deliveries (the exchange and each webhook) by state; the states with none are left out. */
function DeliveryCounts({ counts }: { counts: CreditEvent['deliveries'] }) {
  const parts = (['delivered', 'pending', 'failed'] as const).filter((state) => counts[state] > 0);
  if (parts.length === 0) return <span class="muted">none</span>;
  return (
    <>
      {parts.map((state) => (
        <span key={state} class={`badge ${state}`}>
          {counts[state]} {state}
        </span>
      ))}
    </>
  );
}

/** The outbox (API.md §10), newest first, with a Redeliver button per event. */
export function EventsView() {
  const { query, route } = useLocation();
  const type = query.type ?? '';
  const userId = query.user_id ?? '';
  const after = query.after ?? '';
  const events = useLoad(() => {
    const params = new URLSearchParams({ limit: '50' });
    if (type) params.set('type', type);
    if (userId) params.set('user_id', userId);
    if (after) params.set('cursor', after);
    return api<Page<CreditEvent>>('GET', `/api/events?${params.toString()}`);
  }, [type, userId, after]);
  const [draft, setDraft] = useState({ type, userId });
  useEffect(() => setDraft({ type, userId }), [type, userId]);
  const [outcome, setOutcome] = useState<Outcome>();

  const redeliver = async (event: CreditEvent) => {
    try {
      await api('POST', `/api/events/${enc(event.id)}/redeliver`);
      setOutcome({ ok: true, text: `Event ${event.id} (${event.type}) queued again for every matching active webhook and the exchange.` });
    } catch (error) {
      setOutcome({ ok: false, text: `Event ${event.id} could not be redelivered:`, error: asApiError(error) });
    }
  };

  return (
    <section>
      <h1>Events</h1>
      <form
        class="search"
        onSubmit={(e) => {
          e.preventDefault();
          route(address(draft.type, draft.userId.trim()));
        }}
      >
        <select value={draft.type} onChange={(e) => setDraft({ ...draft, type: e.currentTarget.value })} aria-label="Event type">
          <option value="">every type</option>
          {EVENT_TYPES.map((t) => (
            <option value={t}>{t}</option>
          ))}
        </select>
        <input
          placeholder="user id"
          value={draft.userId}
          onInput={(e) => setDraft({ ...draft, userId: e.currentTarget.value })}
          aria-label="User id"
        />
        <button type="submit">Filter</button>
        {(type || userId) && <a href="/console/events">Clear</a>}
      </form>
      <OutcomeNote outcome={outcome} />
      <LoadError error={events.error} what="Events" />
      <Loading when={events.loading && !events.data} />
      {events.data && events.data.items.length === 0 && (
        <Empty>
          {type || userId
            ? 'No event matches these filters.'
            : 'No events yet: they are written when a wallet runs low, a grant expires, a refund is applied or a settlement fails.'}
        </Empty>
      )}
      {events.data && events.data.items.length > 0 && (
        <table data-table="events">
          <thead>
            <tr>
              <th>when</th>
              <th>type</th>
              <th>data</th>
              <th>deliveries</th>
              <th>id</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {events.data.items.map((e) => (
              <tr key={e.id} data-event={e.id}>
                <td>
                  <Time iso={e.created_at} />
                </td>
                <td>
                  <span class="badge" data-event-type>
                    {e.type}
                  </span>
                </td>
                <td>
                  <Fields value={e.data} />
                </td>
                <td class="counts" data-deliveries>
                  <DeliveryCounts counts={e.deliveries} />
                </td>
                <td>
                  <code class="small">{e.id}</code>
                </td>
                <td class="actions">
                  <button type="button" class="secondary" onClick={() => void redeliver(e)}>
                    Redeliver
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="pager">
        {after && <a href={address(type, userId)}>Newest</a>}
        {events.data?.next_cursor && <a href={address(type, userId, events.data.next_cursor)}>Older →</a>}
      </p>
    </section>
  );
}
