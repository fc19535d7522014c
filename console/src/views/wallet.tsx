import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, enc, type Hold, type LedgerEntry, type Page, type Wallet } from '../api';
import { BalanceChart } from '../balance-chart';
import { WalletGrants } from './grants';
import { asApiError, Empty, ErrorNote, Loading, Money, Time, useLoad } from '../ui';

/** One wallet: its figures, grants, live holds, ledger (newest first, paged) and the balance chart. */
export function WalletView({ userId }: { userId: string }) {
  const id = decodeURIComponent(userId);
  const wallet = useLoad(() => api<Wallet>('GET', `/api/wallets/${enc(id)}`), [id]);
  const holds = useLoad(() => api<Page<Hold>>('GET', `/api/wallets/${enc(id)}/holds?limit=100`), [id]);
  const ledger = useLedger(id);
  return (
    <section>
      <p class="crumbs">
        <a href="/console/wallets">Wallets</a> / {id}
      </p>
      <h1>{id}</h1>
      <ErrorNote error={wallet.error} />
      <Loading when={wallet.loading && !wallet.data} />
      {wallet.data && (
        <dl class="figures">
          <div>
            <dt>balance</dt>
            <dd data-figure="balance">
              <Money value={wallet.data.balance} />
            </dd>
          </div>
          <div>
            <dt>held</dt>
            <dd data-figure="held">
              <Money value={wallet.data.held} />
            </dd>
          </div>
          <div>
            <dt>available</dt>
            <dd data-figure="available">
              <Money value={wallet.data.credits} />
            </dd>
          </div>
          <div>
            <dt>plan · status</dt>
            <dd>
              {wallet.data.plan} · <span class={`badge ${wallet.data.status}`}>{wallet.data.status}</span>
            </dd>
          </div>
        </dl>
      )}
      {!wallet.error && (
        <WalletGrants
          userId={id}
          wallet={wallet.data}
          onChange={() => {
            wallet.reload();
            ledger.reload();
          }}
        />
      )}
      <h2>Balance over time</h2>
      <BalanceChart entries={ledger.entries} />

      <h2>Live holds</h2>
      <ErrorNote error={holds.error} />
      {holds.data && holds.data.items.length === 0 && <Empty>No live holds: nothing of this wallet is reserved right now.</Empty>}
      {holds.data && holds.data.items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>usage key</th>
              <th>feature</th>
              <th class="num">held</th>
              <th>placed</th>
              <th>expires</th>
            </tr>
          </thead>
          <tbody>
            {holds.data.items.map((h) => (
              <tr key={h.usage_key}>
                <td>
                  <code>{h.usage_key}</code>
                </td>
                <td>{h.feature_endpoint_id}</td>
                <td class="num">
                  <Money value={h.hold_amount} />
                </td>
                <td>
                  <Time iso={h.created_at} />
                </td>
                <td>
                  <Time iso={h.expires_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Ledger</h2>
      <ErrorNote error={ledger.error} />
      {!ledger.loading && ledger.entries.length === 0 && !ledger.error && (
        <Empty>No ledger entries: top up the wallet to give it credits.</Empty>
      )}
      {ledger.entries.length > 0 && (
        <table data-table="ledger">
          <thead>
            <tr>
              <th>#</th>
              <th>when</th>
              <th>kind</th>
              <th class="num">amount</th>
              <th class="num">balance after</th>
              <th class="num">held after</th>
              <th>usage / description</th>
            </tr>
          </thead>
          <tbody>
            {ledger.entries.map((e) => (
              <tr key={e.id} data-kind={e.kind}>
                <td>{e.id}</td>
                <td>
                  <Time iso={e.created_at} />
                </td>
                <td>
                  <span class={`badge ${e.kind}`} title={e.kind}>
                    {KIND_LABELS[e.kind] ?? e.kind}
                  </span>
                </td>
                <td class="num">
                  <Money value={e.amount} signed />
                </td>
                <td class="num">
                  <Money value={e.balance_after} />
                </td>
                <td class="num">
                  <Money value={e.held_after} />
                </td>
                <td>
                  {e.usage_key ? <code>{e.usage_key}</code> : (e.description ?? '')}
                  <EntryDetail entry={e} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Loading when={ledger.loading} />
      {ledger.more && !ledger.loading && (
        <p class="pager">
          <button type="button" onClick={ledger.loadMore}>
            Load older entries
          </button>
        </p>
      )}
    </section>
  );
}

/** Ledger kinds in words (the API's word stays in the badge's title). */
const KIND_LABELS: Record<LedgerEntry['kind'], string> = {
  initial: 'initial credits',
  top_up: 'top-up',
  adjustment: 'adjustment',
  charge: 'charge',
  grant: 'grant',
  grant_expired: 'grant expired',
  grant_voided: 'grant voided',
  refund: 'refund',
};

/** A grant id is a UUID: its first block tells the wallet's few grants apart (the full id is in the title). */
const GrantRef = ({ id }: { id: string }) => <code title={id}>{id.slice(0, 8)}</code>;

type Draw = { grant_id?: string; debt?: string; amount?: string; expired?: boolean };
const SHOWN_DRAWS = 3;

/** Which grants a charge drew from (metadata.draws) or a refund gave back to (metadata.returned), a few at most. */
function DrawList({ label, draws }: { label: string; draws: Draw[] }) {
  const shown = draws.slice(0, SHOWN_DRAWS);
  return (
    <small class="muted block" data-draws>
      {label}{' '}
      {shown.map((d, i) => (
        <span key={i}>
          {i > 0 && ', '}
          {d.grant_id ? <GrantRef id={d.grant_id} /> : 'debt'} <Money value={d.amount ?? d.debt ?? '0'} />
          {d.expired && ' (expired at once)'}
        </span>
      ))}
      {draws.length > SHOWN_DRAWS && ` and ${draws.length - SHOWN_DRAWS} more`}
    </small>
  );
}

/** The line under a ledger entry: the grants it concerns, read from its metadata (API.md §8, §9). */
function EntryDetail({ entry }: { entry: LedgerEntry }) {
  const m = entry.metadata;
  const list = (value: unknown) => (Array.isArray(value) ? (value as Draw[]) : []);
  const grantId = typeof m.grant_id === 'string' ? m.grant_id : undefined;
  if ((entry.kind === 'charge' || entry.kind === 'adjustment') && list(m.draws).length > 0) {
    return <DrawList label="paid by" draws={list(m.draws)} />;
  }
  if (entry.kind === 'refund') {
    // A refund names its usage in the column; its reason (the entry's description) goes here.
    return (
      <>
        {entry.description && <small class="block">{entry.description}</small>}
        {list(m.returned).length > 0 && <DrawList label="returned to" draws={list(m.returned)} />}
      </>
    );
  }
  if (grantId && (entry.kind === 'grant' || entry.kind === 'grant_expired' || entry.kind === 'grant_voided')) {
    return (
      <small class="muted block">
        grant <GrantRef id={grantId} />
      </small>
    );
  }
  return null;
}

/** The ledger newest first, 100 at a time; the chart draws what has been loaded. */
function useLedger(userId: string) {
  const [entries, setEntries] = useState<LedgerEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [more, setMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<ApiError>();
  const fetchPage = (after: string | null, append: boolean) => {
    setLoading(true);
    setError(undefined);
    api<Page<LedgerEntry>>('GET', `/api/wallets/${enc(userId)}/transactions?limit=100${after ? `&cursor=${enc(after)}` : ''}`).then(
      (page) => {
        setEntries((old) => (append ? [...old, ...page.items] : page.items));
        setCursor(page.next_cursor);
        setMore(page.next_cursor !== null);
        setLoading(false);
      },
      (e: unknown) => {
        setError(asApiError(e));
        setLoading(false);
      },
    );
  };
  useEffect(() => fetchPage(null, false), [userId]);
  return { entries, more, loading, error, loadMore: () => fetchPage(cursor, true), reload: () => fetchPage(null, false) };
}
