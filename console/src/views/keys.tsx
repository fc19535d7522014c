import { useState } from 'preact/hooks';
import { api, enc, type Feature, type Key, type KeyDetail, type KeyWithSecret, type Page } from '../api';
import { asApiError, Empty, ErrorNote, Loading, Money, type Outcome, OutcomeNote, SecretOnce, Time, useLoad } from '../ui';

/** Keys issued through the API (API.md §11): secrets never shown again after their one answer. */
export function KeysView() {
  const [pages, setPages] = useState<string[]>([]);
  const keys = useLoad(async () => {
    const first = await api<Page<Key>>('GET', '/api/keys?limit=100');
    const items = [...first.items];
    let next = first.next_cursor;
    for (const cursor of pages) {
      if (!next || cursor !== next) break;
      const page = await api<Page<Key>>('GET', `/api/keys?limit=100&cursor=${enc(cursor)}`);
      items.push(...page.items);
      next = page.next_cursor;
    }
    // What a capped key spent this period is on its own record only: read those few.
    const spent = new Map<string, KeyDetail>();
    await Promise.all(
      items
        .filter((k) => k.spend_cap && !k.revoked_at)
        .map(async (k) => spent.set(k.key_id, await api<KeyDetail>('GET', `/api/keys/${enc(k.key_id)}`))),
    );
    return { items, next, spent };
  }, [pages.join(',')]);
  const [secret, setSecret] = useState<{ label: string; key: string }>();
  const [outcome, setOutcome] = useState<Outcome>();

  const revoke = async (key: Key) => {
    if (!confirm(`Revoke the key “${key.name}” (${key.prefix}…)? Every request with it is refused from now on.`)) return;
    try {
      await api<Key>('POST', `/api/keys/${enc(key.key_id)}/revoke`);
      setOutcome({ ok: true, text: `Key “${key.name}” revoked.` });
    } catch (error) {
      setOutcome({ ok: false, text: `Key “${key.name}” could not be revoked:`, error: asApiError(error) });
    }
    keys.reload();
  };
  const rotate = async (key: Key) => {
    const answer = prompt(
      `Rotate “${key.name}”: a new secret is issued now. For how many seconds should the old secret keep working? (0 to 604800)`,
      '3600',
    );
    if (answer === null) return;
    if (!/^\d+$/.test(answer.trim())) {
      setOutcome({ ok: false, text: `“${answer}” is not a whole number of seconds; nothing was rotated.` });
      return;
    }
    try {
      const rotated = await api<KeyWithSecret>('POST', `/api/keys/${enc(key.key_id)}/rotate`, { grace_seconds: Number(answer.trim()) });
      setOutcome(undefined);
      setSecret({ label: `New secret for “${rotated.name}”.`, key: rotated.key });
    } catch (error) {
      setOutcome({ ok: false, text: `Key “${key.name}” could not be rotated:`, error: asApiError(error) });
    }
    keys.reload();
  };

  return (
    <section>
      <h1>API keys</h1>
      <p class="muted">
        Keys issued here are stored as hashes only. The keys from SERVER_API_KEYS / ADMIN_API_KEYS are configuration and are not listed.
      </p>
      {secret && <SecretOnce label={secret.label} secret={secret.key} onDone={() => setSecret(undefined)} />}
      <OutcomeNote outcome={outcome} />
      <IssueKey
        onIssued={(key) => {
          setOutcome(undefined);
          setSecret({ label: `Key “${key.name}” issued (${key.scope}).`, key: key.key });
          keys.reload();
        }}
      />
      <h2>Issued keys</h2>
      <ErrorNote error={keys.error} />
      <Loading when={keys.loading && !keys.data} />
      {keys.data && keys.data.items.length === 0 && <Empty>No keys issued yet: issue one above for a service or an operator.</Empty>}
      {keys.data && keys.data.items.length > 0 && (
        <table data-table="keys">
          <thead>
            <tr>
              <th>name</th>
              <th>prefix</th>
              <th>scope</th>
              <th>allowed features</th>
              <th class="num">spend cap</th>
              <th class="num">spent this period</th>
              <th>expires</th>
              <th>status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {keys.data.items.map((k) => {
              const status = keyStatus(k);
              const detail = keys.data!.spent.get(k.key_id);
              return (
                <tr key={k.key_id} data-key={k.key_id}>
                  <td>{k.name}</td>
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td>
                    <span class={`badge ${k.scope}`}>{k.scope}</span>
                  </td>
                  <td>{k.allowed_features.length === 0 ? <span class="muted">all</span> : k.allowed_features.join(', ')}</td>
                  <td class="num">
                    {k.spend_cap ? (
                      <>
                        {/* Always a string in answers; the schema is shared with the request body, which also takes a number. */}
                        <Money value={String(k.spend_cap.amount)} /> <span class="muted">/ {k.spend_cap.period}</span>
                      </>
                    ) : (
                      <span class="muted">no cap</span>
                    )}
                  </td>
                  <td class="num">
                    {detail?.spent_this_period ? (
                      <>
                        <Money value={detail.spent_this_period} />
                        {detail.period_resets_at && (
                          <small class="muted block">
                            resets <Time iso={detail.period_resets_at} />
                          </small>
                        )}
                      </>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                  <td>{k.expires_at ? <Time iso={k.expires_at} /> : <span class="muted">never</span>}</td>
                  <td data-key-status>
                    <span class={`badge ${status}`}>{status}</span>
                    {k.revoked_at && <Time iso={k.revoked_at} />}
                  </td>
                  <td class="actions">
                    {status !== 'revoked' && (
                      <>
                        <button type="button" class="secondary" onClick={() => void rotate(k)}>
                          Rotate
                        </button>
                        <button type="button" class="danger" onClick={() => void revoke(k)}>
                          Revoke
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {keys.data?.next && !keys.loading && (
        <p class="pager">
          <button type="button" class="secondary" onClick={() => setPages([...pages, keys.data!.next!])}>
            Load more keys
          </button>
        </p>
      )}
    </section>
  );
}

function keyStatus(k: Key): 'revoked' | 'expired' | 'active' {
  if (k.revoked_at) return 'revoked';
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return 'expired';
  return 'active';
}

/** The issue form: name, scope, features (from the catalogue), an optional spend cap and expiry. */
function IssueKey({ onIssued }: { onIssued: (key: KeyWithSecret) => void }) {
  const features = useLoad(() => api<Page<Feature>>('GET', '/api/features?limit=200'), []);
  const [error, setError] = useState<ReturnType<typeof asApiError>>();
  const [busy, setBusy] = useState(false);
  return (
    <details class="panel" open>
      <summary>Issue a key</summary>
      <form
        class="form-grid"
        data-form="issue-key"
        onSubmit={(event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const data = new FormData(form);
          const capAmount = String(data.get('cap_amount') ?? '').trim();
          const expires = String(data.get('expires_at') ?? '').trim();
          const body = {
            name: String(data.get('name') ?? '').trim(),
            scope: String(data.get('scope')),
            allowed_features: data.getAll('feature').map(String),
            spend_cap: capAmount ? { amount: capAmount, period: String(data.get('cap_period')) } : null,
            ...(expires ? { expires_at: new Date(expires).toISOString() } : {}),
          };
          setBusy(true);
          setError(undefined);
          api<KeyWithSecret>('POST', '/api/keys', body).then(
            (key) => {
              setBusy(false);
              form.reset();
              onIssued(key);
            },
            (e: unknown) => {
              setBusy(false);
              setError(asApiError(e));
            },
          );
        }}
      >
        <label>
          Name
          <input name="name" required maxLength={128} placeholder="chat service" />
        </label>
        <label>
          Scope
          <select name="scope">
            <option value="service">service (credits process)</option>
            <option value="admin">admin (operators)</option>
          </select>
        </label>
        <label>
          Spend cap (credits, optional)
          <span class="inline">
            <input name="cap_amount" inputMode="decimal" placeholder="500" pattern="\d+(\.\d{1,6})?" />
            <select name="cap_period" aria-label="Spend cap period">
              <option value="day">per UTC day</option>
              <option value="month">per UTC month</option>
            </select>
          </span>
        </label>
        <label>
          Expires (your local time, optional)
          <input name="expires_at" type="datetime-local" />
        </label>
        <fieldset>
          <legend>Allowed features (none ticked = all)</legend>
          {features.data?.items.length === 0 && <span class="muted">No features in the catalogue yet.</span>}
          {features.data?.items.map((f) => (
            <label class="check" key={f.feature_endpoint_id}>
              <input type="checkbox" name="feature" value={f.feature_endpoint_id} /> <code>{f.feature_endpoint_id}</code>
            </label>
          ))}
          <ErrorNote error={features.error} />
        </fieldset>
        <p>
          <button type="submit" disabled={busy}>
            Issue key
          </button>
        </p>
        <ErrorNote error={error} />
      </form>
    </details>
  );
}
