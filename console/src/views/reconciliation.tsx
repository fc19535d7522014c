import { api, type Mismatch } from '../api';
import { Empty, ErrorNote, Loading, Money, useLoad } from '../ui';

/** The books checked in SQL: balance = Σ ledger = last balance_after, held = Σ live holds. */
export function ReconciliationView() {
  const run = useLoad(() => api<{ wallets_checked: number; mismatches: Mismatch[] }>('GET', '/api/reconciliation'), []);
  return (
    <section>
      <h1>Reconciliation</h1>
      <p class="muted">
        Every wallet, checked in one database snapshot: its balance equals the sum of its ledger and the last entry's balance after, and
        held equals the sum of its live holds.
      </p>
      <button type="button" onClick={run.reload} disabled={run.loading}>
        Check again
      </button>
      <ErrorNote error={run.error} />
      <Loading when={run.loading} />
      {run.data && run.data.mismatches.length === 0 && (
        <Empty>
          <strong class="ok">The books balance.</strong> {run.data.wallets_checked.toLocaleString('en')} wallets checked, no mismatch.
        </Empty>
      )}
      {run.data && run.data.mismatches.length > 0 && (
        <>
          <p class="error">
            {run.data.mismatches.length} of {run.data.wallets_checked.toLocaleString('en')} wallets do not balance.
          </p>
          <table>
            <thead>
              <tr>
                <th>wallet</th>
                <th class="num">balance</th>
                <th class="num">Σ ledger</th>
                <th class="num">last balance after</th>
                <th class="num">held</th>
                <th class="num">Σ live holds</th>
              </tr>
            </thead>
            <tbody>
              {run.data.mismatches.map((m) => (
                <tr key={m.user_id}>
                  <td>
                    <a href={`/console/wallets/${encodeURIComponent(m.user_id)}`}>{m.user_id}</a>
                  </td>
                  <td class="num">
                    <Money value={m.balance} />
                  </td>
                  <td class="num">
                    <Money value={m.ledger_sum} />
                  </td>
                  <td class="num">{m.last_balance_after === null ? '—' : <Money value={m.last_balance_after} />}</td>
                  <td class="num">
                    <Money value={m.held} />
                  </td>
                  <td class="num">
                    <Money value={m.live_holds} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
