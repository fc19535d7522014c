import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, ApiError, type Page, type SettlementFailure } from '../api';
import { money } from '../format';
import { asApiError, Empty, ErrorNote, Loading, Time, useLoad } from '../ui';

const STATUSES = ['pending', 'replayed', 'discarded'] as const;

/** Queued settlements that could not be applied, with Replay and Discard for the pending ones. */
export function FailuresView() {
  const { query, route } = useLocation();
  const status = (STATUSES as readonly string[]).includes(query.status ?? '') ? query.status : 'pending';
  const failures = useLoad(() => api<Page<SettlementFailure>>('GET', `/api/settlement-failures?status=${status}&limit=100`), [status]);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string; error?: ApiError }>();
  const act = async (failure: SettlementFailure, action: 'replay' | 'discard') => {
    if (action === 'discard' && !confirm(`Discard settlement failure ${failure.id}? Nothing will be charged for it.`)) return;
    try {
      const result = await api<{ settlement?: { credits_charged: string; user_id: string } }>(
        'POST',
        `/api/settlement-failures/${failure.id}/${action}`,
      );
      setOutcome({
        ok: true,
        text:
          action === 'replay' && result.settlement
            ? `Failure ${failure.id} replayed: ${money(result.settlement.credits_charged)} credits charged to ${result.settlement.user_id}.`
            : `Failure ${failure.id} discarded.`,
      });
    } catch (error) {
      setOutcome({ ok: false, text: `Failure ${failure.id} could not be ${action}ed:`, error: asApiError(error) });
    }
    failures.reload();
  };
  return (
    <section>
      <h1>Settlement failures</h1>
      <p class="tabs">
        {STATUSES.map((s) => (
          <button type="button" class={s === status ? 'active' : ''} onClick={() => route(`/console/failures?status=${s}`)}>
            {s}
          </button>
        ))}
      </p>
      {outcome && (
        <p class={outcome.ok ? 'notice' : 'error'} role="status">
          {outcome.text} {outcome.error && `${outcome.error.message} (${outcome.error.status})`}
        </p>
      )}
      <ErrorNote error={failures.error} />
      <Loading when={failures.loading && !failures.data} />
      {failures.data && failures.data.items.length === 0 && (
        <Empty>{status === 'pending' ? 'No pending failures: every queued settlement was applied.' : `No ${status} failures.`}</Empty>
      )}
      {failures.data && failures.data.items.length > 0 && (
        <table data-table="failures">
          <thead>
            <tr>
              <th>#</th>
              <th>received</th>
              <th>queue</th>
              <th>reason</th>
              <th>attempts</th>
              <th>message</th>
              {status === 'pending' && <th />}
            </tr>
          </thead>
          <tbody>
            {failures.data.items.map((f) => (
              <tr key={f.id} data-failure={f.id}>
                <td>{f.id}</td>
                <td>
                  <Time iso={f.created_at} />
                </td>
                <td>
                  <code>{f.queue}</code>
                </td>
                <td>
                  <span class="badge">{f.error_status}</span> {f.reason}
                </td>
                <td>{f.attempts}</td>
                <td>
                  <details>
                    <summary>payload</summary>
                    <pre>{f.payload_encoding === 'utf8' ? f.payload : `(base64) ${f.payload}`}</pre>
                  </details>
                </td>
                {status === 'pending' && (
                  <td class="actions">
                    <button type="button" onClick={() => void act(f, 'replay')}>
                      Replay
                    </button>
                    <button type="button" class="secondary" onClick={() => void act(f, 'discard')}>
                      Discard
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
