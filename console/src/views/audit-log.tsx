import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, type AuditEntry, enc, type Page } from '../api';
import { Empty, ErrorNote, Fields, Loading, Time, useLoad } from '../ui';

/** API.md §12's actions, checked against the generated answer type. */
const ACTIONS = [
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
] as const satisfies readonly AuditEntry['action'][];

type Filters = { target: string; actor: string; action: string };
const FILTERS = ['target', 'actor', 'action'] as const;

function address(filters: Filters, after?: string): string {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
  if (after) params.set('after', after);
  const query = params.toString();
  return `/console/audit-log${query ? `?${query}` : ''}`;
}

/** Where a row's target lives in the console, when it has a page. */
function targetLink(entry: AuditEntry): string | null {
  const [area] = entry.action.split('.');
  if (area === 'wallet' || area === 'grant') return `/console/wallets/${enc(entry.target)}`;
  if (area === 'key') return '/console/keys';
  if (area === 'webhook') return `/console/webhooks/${enc(entry.target)}`;
  if (area === 'settlement_failure') return '/console/failures?status=replayed';
  if (area === 'feature' || area === 'model' || area === 'settings') return '/console/pricing';
  return null;
}

/** Every admin write, newest first, filtered by target / actor / action, a page at a time. */
export function AuditLogView() {
  const { query, route } = useLocation();
  const filters: Filters = { target: query.target ?? '', actor: query.actor ?? '', action: query.action ?? '' };
  const after = query.after ?? '';
  const log = useLoad(() => {
    const params = new URLSearchParams({ limit: '50' });
    for (const name of FILTERS) if (filters[name]) params.set(name, filters[name]);
    if (after) params.set('cursor', after);
    return api<Page<AuditEntry>>('GET', `/api/audit-log?${params.toString()}`);
  }, [filters.target, filters.actor, filters.action, after]);
  const [draft, setDraft] = useState(filters);
  useEffect(() => setDraft(filters), [filters.target, filters.actor, filters.action]);
  const filtered = FILTERS.some((name) => filters[name]);

  return (
    <section>
      <h1>Audit log</h1>
      <form
        class="search"
        data-form="audit-filters"
        onSubmit={(event) => {
          event.preventDefault();
          route(address({ target: draft.target.trim(), actor: draft.actor.trim(), action: draft.action }));
        }}
      >
        <input
          name="target"
          placeholder="target: user id, key id, feature…"
          value={draft.target}
          onInput={(e) => setDraft({ ...draft, target: e.currentTarget.value })}
          aria-label="Target"
        />
        <input
          name="actor"
          placeholder="actor: key id or env"
          value={draft.actor}
          onInput={(e) => setDraft({ ...draft, actor: e.currentTarget.value })}
          aria-label="Actor"
        />
        <select
          name="action"
          value={draft.action}
          onChange={(e) => setDraft({ ...draft, action: e.currentTarget.value })}
          aria-label="Action"
        >
          <option value="">every action</option>
          {ACTIONS.map((a) => (
            <option value={a}>{a}</option>
          ))}
        </select>
        <button type="submit">Filter</button>
        {filtered && <a href="/console/audit-log">Clear</a>}
      </form>
      <ErrorNote error={log.error} />
      <Loading when={log.loading && !log.data} />
      {log.data && log.data.items.length === 0 && (
        <Empty>
          {filtered
            ? 'No audit row matches these filters: widen them or clear them.'
            : 'No admin write yet. Every admin change (wallets, prices, keys, replays…) appends a row here.'}
        </Empty>
      )}
      {log.data && log.data.items.length > 0 && (
        <table data-table="audit">
          <thead>
            <tr>
              <th>#</th>
              <th>when</th>
              <th>actor</th>
              <th>action</th>
              <th>target</th>
              <th>changes</th>
            </tr>
          </thead>
          <tbody>
            {log.data.items.map((e) => {
              const link = targetLink(e);
              return (
                <tr key={e.id} data-audit={e.id}>
                  <td>{e.id}</td>
                  <td>
                    <Time iso={e.at} />
                  </td>
                  <td>
                    <a href={address({ ...filters, actor: e.actor.key_id })} title="Only this actor's writes">
                      {e.actor.name}
                    </a>
                    {e.actor.key_id !== 'env' && <small class="muted block">{e.actor.key_id}</small>}
                  </td>
                  <td>
                    <a href={address({ ...filters, action: e.action })} class="badge" title="Only this action">
                      {e.action}
                    </a>
                  </td>
                  <td>
                    {link ? <a href={link}>{e.target}</a> : <code>{e.target}</code>}
                    <small class="block">
                      <a href={address({ ...filters, target: e.target })} class="muted">
                        only this target
                      </a>
                    </small>
                  </td>
                  <td>
                    <Fields value={e.changes} />
                    {e.request_id && <small class="muted block">request {e.request_id}</small>}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <p class="pager">
        {after && <a href={address(filters)}>Newest</a>}
        {log.data?.next_cursor && <a href={address(filters, log.data.next_cursor)}>Older →</a>}
      </p>
    </section>
  );
}
