import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, enc, type Page, type Wallet } from '../api';
import { Empty, ErrorNote, Loading, Money, Time, useLoad } from '../ui';

/** Wallets by user id, searched by prefix, a page at a time (the API's cursor). */
export function WalletsView() {
  const { query, route } = useLocation();
  const prefix = query.q ?? '';
  const cursor = query.after ?? '';
  const wallets = useLoad(
    () =>
      api<Page<Wallet>>(
        'GET',
        `/api/wallets?limit=25${prefix ? `&user_id_prefix=${enc(prefix)}` : ''}${cursor ? `&cursor=${enc(cursor)}` : ''}`,
      ),
    [prefix, cursor],
  );
  const [draft, setDraft] = useState(prefix);
  return (
    <section>
      <h1>Wallets</h1>
      <form
        class="search"
        onSubmit={(event) => {
          event.preventDefault();
          route(draft ? `/console/wallets?q=${enc(draft)}` : '/console/wallets');
        }}
      >
        <input
          type="search"
          placeholder="user id starts with…"
          value={draft}
          onInput={(e) => setDraft(e.currentTarget.value)}
          aria-label="Search wallets"
        />
        <button type="submit">Search</button>
      </form>
      <ErrorNote error={wallets.error} />
      <Loading when={wallets.loading && !wallets.data} />
      {wallets.data && wallets.data.items.length === 0 && (
        <Empty>
          {prefix
            ? `No wallet's user id starts with “${prefix}”.`
            : 'No wallets yet. Create one with POST /api/wallets (see docs/api.md), then it shows here.'}
        </Empty>
      )}
      {wallets.data && wallets.data.items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>user id</th>
              <th>plan</th>
              <th>status</th>
              <th class="num">balance</th>
              <th class="num">held</th>
              <th class="num">available</th>
              <th>updated</th>
            </tr>
          </thead>
          <tbody>
            {wallets.data.items.map((w) => (
              <tr key={w.user_id}>
                <td>
                  <a href={`/console/wallets/${enc(w.user_id)}`}>{w.user_id}</a>
                </td>
                <td>{w.plan}</td>
                <td>
                  <span class={`badge ${w.status}`}>{w.status}</span>
                </td>
                <td class="num">
                  <Money value={w.balance} />
                </td>
                <td class="num">
                  <Money value={w.held} />
                </td>
                <td class="num">
                  <Money value={w.credits} />
                </td>
                <td>
                  <Time iso={w.updated_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="pager">
        {cursor && <a href={prefix ? `/console/wallets?q=${enc(prefix)}` : '/console/wallets'}>First page</a>}
        {wallets.data?.next_cursor && (
          <a href={`/console/wallets?${prefix ? `q=${enc(prefix)}&` : ''}after=${enc(wallets.data.next_cursor)}`}>Next page →</a>
        )}
      </p>
    </section>
  );
}
